"""Print row counts and a few rows of every table and view in the given SQLite files (the quick start's last step)."""

from __future__ import annotations

import sqlite3
import sys


def show(path: str) -> None:
    print(f"\n# {path}")
    with sqlite3.connect(path) as db:
        tables = [
            r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")
        ]
        for table in tables:
            count = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            print(f"\n{table}: {count} rows")
            cursor = db.execute(f'SELECT * FROM "{table}" LIMIT 3')
            columns = [d[0] for d in cursor.description if d[0] not in ("raw",)]
            for row in cursor:
                values = dict(zip([d[0] for d in cursor.description], row, strict=True))
                print("  " + ", ".join(f"{c}={str(values[c])[:40]}" for c in columns))


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        show(argument)
