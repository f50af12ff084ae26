#!/usr/bin/env bash
# The quick start: install, start the bundled gateway simulator, and run the send-and-track and
# report-sync example DAGs end to end with `airflow dags test` against it and the embedded SQLite
# store; then print what landed in the tables. Everything lives under .quickstart/ (removed first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
export PATH="$PWD/.venv/bin:$PATH"
ROOT="$PWD/.quickstart"
rm -rf "$ROOT"
# shellcheck source=scripts/lib/airflow-env.sh
source scripts/lib/airflow-env.sh
sms_airflow_env "$ROOT"
sms_start_simulator "$ROOT" --report-delay 1 --failure-rate 0.05
trap 'kill $SIMULATOR_PID 2>/dev/null || true' EXIT

echo "== airflow db migrate"
airflow db migrate > "$ROOT/db-migrate.log" 2>&1 || { cat "$ROOT/db-migrate.log"; exit 1; }
for dag in sms_send_and_track sms_report_sync; do
    echo "== airflow dags test $dag"
    airflow dags test "$dag" 2>&1 | tee "$ROOT/$dag.log" | grep -E "summary:|DagRun Finished|ERROR" | cut -c1-220 || true
    # the DAG run's own final state: a task's "new_state=success" line must not pass a failed run
    state=$(grep -E "DagRun Finished: dag_id=$dag," "$ROOT/$dag.log" | tail -n 1 | grep -oE "run_duration=[0-9.]+, state=[a-z_]+" \
        | sed 's/.*state=//' || true)
    [ "$state" = success ] || { echo "$dag finished in state '${state:-unknown}'; see $ROOT/$dag.log" >&2; exit 1; }
done
echo "== what landed in the tables"
python scripts/show_tables.py "$AIRFLOW_HOME/sms_store.db" "$ROOT/warehouse.db"
