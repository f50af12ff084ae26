# Shared by scripts/quickstart.sh and scripts/airflow-local.sh (sourced, not run): a private Airflow under
# one directory, pointed at the example DAGs, and the bundled gateway simulator with its example connections.
# Callers have `set -euo pipefail`, are in the repository root and have the virtualenv's bin on PATH.

# sms_airflow_env ROOT: AIRFLOW_HOME=ROOT/airflow, no Airflow examples, our example DAGs, the sms_warehouse
# SQLite connection (ROOT/warehouse.db) the example DAGs write to.
sms_airflow_env() {
    local root=$1
    mkdir -p "$root/airflow"
    export AIRFLOW_HOME="$root/airflow"
    export AIRFLOW__CORE__LOAD_EXAMPLES=False
    export AIRFLOW__CORE__DAGS_FOLDER="$PWD/example_dags"
    export AIRFLOW_CONN_SMS_WAREHOUSE="{\"conn_type\": \"sqlite\", \"host\": \"$root/warehouse.db\"}"
}

# sms_start_simulator ROOT [simulator options...]: start the simulator in the background (its own process
# group; log ROOT/simulator.log), wait until it serves, and export its AIRFLOW_CONN_SMS_* (also left in
# ROOT/simulator.env). Sets SIMULATOR_PID and SIMULATOR_URL (its HTTP base URL, for /_sim/ admin calls).
sms_start_simulator() {
    local root=$1
    shift
    rm -f "$root/simulator.env"
    setsid python -m airflow_provider_sms.simulator --http-port 0 --https-port 0 --env-file "$root/simulator.env" "$@" \
        > "$root/simulator.log" 2>&1 &
    SIMULATOR_PID=$!
    for _ in $(seq 300); do
        [ -s "$root/simulator.env" ] && grep -q "^serving on" "$root/simulator.log" && break
        kill -0 "$SIMULATOR_PID" 2>/dev/null || { cat "$root/simulator.log" >&2; return 1; }
        sleep 0.1
    done
    grep -q "^serving on" "$root/simulator.log" || { echo "the simulator did not start; see $root/simulator.log" >&2; return 1; }
    # shellcheck disable=SC1091
    source "$root/simulator.env"
    SIMULATOR_URL=$(grep -oE "serving on http://[^ ]+" "$root/simulator.log" | head -n 1 | sed 's/serving on //')
}
