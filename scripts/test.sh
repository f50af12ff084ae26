#!/usr/bin/env bash
# Set up the virtualenv and run the whole test suite, including PostgreSQL tests when a server can be had:
# SMS_TEST_POSTGRES_URI if set, else (as root on Debian) a local server installed and started by .ci/postgres.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
if [ -z "${SMS_TEST_POSTGRES_URI:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    eval "$(bash .ci/postgres.sh | tail -n 1)"
    export SMS_TEST_POSTGRES_URI
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
