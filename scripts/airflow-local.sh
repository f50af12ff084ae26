#!/usr/bin/env bash
# A real Airflow on this machine, as an operator runs it: api-server, scheduler, dag-processor and triggerer
# as separate processes, the bundled gateway simulator, the five example connections (in the metadata
# database, so the UI lists them) and the example DAGs. Everything lives under .airflow-local/ (made afresh
# on every start; SMS_LOCAL_DIR to move it).
#
#   scripts/airflow-local.sh [start]   start everything, start the demo, print the UI's URL and login, and stay
#                                      in the foreground; Ctrl-C (or the end of this script, or `stop`) stops
#                                      everything it started
#   scripts/airflow-local.sh stop      stop a running start (from another terminal), and check nothing is left
#   scripts/airflow-local.sh check     against a running start: trigger sms_send_and_track over the REST API
#                                      and wait for its DAG run to succeed, its sensor having deferred to the
#                                      triggerer; push an opt-out reply and wait for the AssetWatcher's run
#   scripts/airflow-local.sh status    what is running
#
# Settings (environment): SMS_LOCAL_PORT (8080), SMS_LOCAL_DIR (.airflow-local), SMS_LOCAL_DEMO=0 (start
# without the demo), SMS_LOCAL_COMPONENTS (default "api-server scheduler dag-processor triggerer"),
# SMS_VENV (a virtualenv that already has the provider installed; default: make .venv with scripts/venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
ROOT=${SMS_LOCAL_DIR:-$REPO/.airflow-local}
PIDS=$ROOT/pids
COMMAND=${1:-start}
# shellcheck source=scripts/lib/airflow-env.sh
source scripts/lib/airflow-env.sh

venv() {
    if [ -z "${SMS_VENV:-}" ]; then
        bash scripts/venv.sh
        SMS_VENV=$REPO/.venv
    fi
    export PATH="$SMS_VENV/bin:$PATH"
}

# The processes of a start: one line "name pid" each; every one leads its own process group (setsid), so
# that stopping it stops its children too (uvicorn workers, executor workers, task supervisors, trigger runners).
running() {
    [ -f "$PIDS" ] || return 0
    while read -r name pid; do
        if kill -0 "$pid" 2>/dev/null; then echo "$name $pid"; fi
    done < "$PIDS"
}

# Processes still alive that belong to this start: in one of its process groups, or descended from one (they
# carry its SMS_LOCAL_RUN marker in their environment, even if they made a session of their own).
leftovers() {
    local groups="" run="" proc pid pgid
    [ -f "$PIDS" ] && groups=$(awk '{print $2}' "$PIDS" | tr '\n' ' ')
    [ -f "$ROOT/run-id" ] && run=$(cat "$ROOT/run-id")
    for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        pgid=$(awk '{print $5}' "$proc/stat" 2>/dev/null) || continue
        if [[ " $groups " == *" $pgid "* ]] \
            || { [ -n "$run" ] && { tr '\0' '\n' < "$proc/environ"; } 2>/dev/null | grep -qxF "SMS_LOCAL_RUN=$run"; }; then
            echo "$pid $({ tr '\0' ' ' < "$proc/cmdline"; } 2>/dev/null | cut -c1-100)"
        fi
    done
}

# terminate_and_wait "name pid lines" SECONDS: TERM their process groups, wait until they are gone
terminate_and_wait() {
    local entries=$1 name pid alive
    [ -n "$entries" ] || return 0
    while read -r _ pid; do kill -TERM -- "-$pid" 2>/dev/null || true; done <<< "$entries"
    for _ in $(seq $(($2 * 5))); do
        alive=0
        while read -r name pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <<< "$entries"
        [ "$alive" = 0 ] && return 0
        sleep 0.2
    done
}

stop_all() {
    trap - EXIT INT TERM
    [ -d "$ROOT" ] && touch "$ROOT/stopping"
    local entries
    entries=$(running)
    if [ -n "$entries" ]; then
        echo "== stopping: $(echo "$entries" | awk '{print $1}' | tr '\n' ' ')"
        # the scheduler, DAG processor and triggerer first, while the API server (which their tasks and
        # triggers report to) and the simulator still answer; then the rest
        terminate_and_wait "$(running | grep -vE '^(api-server|simulator|pusher) ')" 20
        terminate_and_wait "$(running)" 20
        while read -r name pid; do
            [ -n "$name" ] || continue
            echo "$name did not stop within 20 s: killed" >&2
            kill -KILL -- "-$pid" 2>/dev/null || true
        done <<< "$(running)"
    fi
    sleep 0.5
    local left
    left=$(leftovers)
    if [ -n "$left" ]; then
        echo "processes of this start still running, killing them:" >&2
        echo "$left" >&2
        while read -r pid _; do kill -KILL "$pid" 2>/dev/null || true; done <<< "$left"
        sleep 0.5
        left=$(leftovers)
        [ -z "$left" ] || { echo "still running: $left" >&2; return 1; }
    fi
    rm -f "$PIDS"
    echo "== stopped; no process of this start is left"
}

# spawn NAME COMMAND...: start COMMAND in its own process group, output to $ROOT/logs/NAME.log
spawn() {
    local name=$1
    shift
    SMS_LOCAL_RUN=$RUN_ID setsid "$@" > "$ROOT/logs/$name.log" 2>&1 < /dev/null &
    echo "$name $!" >> "$PIDS"
}

start() {
    if [ -n "$(running)" ]; then
        echo "already running under $ROOT (scripts/airflow-local.sh stop):" >&2
        running >&2
        exit 1
    fi
    local port=${SMS_LOCAL_PORT:-8080}
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is taken; set SMS_LOCAL_PORT" >&2
        exit 1
    fi
    if [ -d "$ROOT" ] && [ -n "$(ls -A "$ROOT")" ] && [ ! -f "$ROOT/run-id" ]; then
        echo "$ROOT is not empty and not made by this script: not removing it (set SMS_LOCAL_DIR)" >&2
        exit 1
    fi
    venv
    rm -rf "$ROOT"
    # Its files hold the demo's secrets (the JWT and API keys, the admin password): readable by this user only.
    umask 077
    mkdir -p "$ROOT/logs"
    : > "$PIDS"
    RUN_ID=$(date +%s)-$$
    echo "$RUN_ID" > "$ROOT/run-id"
    trap stop_all EXIT
    trap 'exit 130' INT TERM

    sms_airflow_env "$ROOT"
    # Reports come 10 s after a send: a trigger that fires within seconds of its deferral can meet Airflow 3.3's
    # race with the deferred attempt's late executor event, which fails the resumed task (apache/airflow#72716,
    # #71580); seen here under load with a 2 s delay.
    SMS_LOCAL_RUN=$RUN_ID sms_start_simulator "$ROOT" --report-delay 10 --failure-rate 0.05
    echo "simulator $SIMULATOR_PID" >> "$PIDS"

    # The UI's login: SimpleAuthManager with one admin whose password we write before it would generate one.
    local password
    password=$(python -c "import secrets; print(secrets.token_urlsafe(12))")
    echo "{\"admin\": \"$password\"}" > "$AIRFLOW_HOME/simple_auth_manager_passwords.json"
    cat > "$ROOT/env.sh" <<ENV
# The settings every component of this start runs with (scripts/airflow-local.sh check sources this).
export AIRFLOW_HOME='$AIRFLOW_HOME'
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER='$AIRFLOW__CORE__DAGS_FOLDER'
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE='$AIRFLOW_HOME/simple_auth_manager_passwords.json'
export AIRFLOW__CORE__TEST_CONNECTION=Enabled
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT=$port
export AIRFLOW__API__BASE_URL=http://localhost:$port
export AIRFLOW__API__WORKERS=1
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://localhost:$port/execution/
export AIRFLOW__API_AUTH__JWT_SECRET='$(python -c "import secrets; print(secrets.token_hex(32))")'
export AIRFLOW__API__SECRET_KEY='$(python -c "import secrets; print(secrets.token_hex(32))")'
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=30
export AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL=30
export SMS_LOCAL_COMPONENTS='${SMS_LOCAL_COMPONENTS:-api-server scheduler dag-processor triggerer}'
export SMS_LOCAL_URL=http://localhost:$port
export SMS_LOCAL_USER=admin
export SMS_LOCAL_PASSWORD='$password'
export SMS_SIMULATOR_URL='$SIMULATOR_URL'
export SMS_CALLBACK_SECRET='$(python -c "import secrets; print(secrets.token_urlsafe(24))")'
ENV
    # shellcheck disable=SC1091
    source "$ROOT/env.sh"

    echo "== airflow db migrate"
    airflow db migrate > "$ROOT/logs/db-migrate.log" 2>&1 || { cat "$ROOT/logs/db-migrate.log"; exit 1; }
    # The example connections into the metadata database (the UI lists and edits them there); the
    # AIRFLOW_CONN_* variables go, so that the database's are the ones every component reads.
    python scripts/airflow_local.py connections "$ROOT/connections.json"
    unset AIRFLOW_CONN_SMS_PAASW_V2 AIRFLOW_CONN_SMS_PAASW_V1 AIRFLOW_CONN_SMS_INTL AIRFLOW_CONN_SMS_ACCOUNT_MD5 \
        AIRFLOW_CONN_SMS_CLOUD_MAS AIRFLOW_CONN_SMS_WAREHOUSE
    airflow connections import "$ROOT/connections.json" > "$ROOT/logs/connections.log" 2>&1 \
        || { cat "$ROOT/logs/connections.log"; exit 1; }

    local component
    for component in $SMS_LOCAL_COMPONENTS; do
        spawn "$component" airflow "$component"
    done
    echo "== waiting for the api-server and the example DAGs"
    python scripts/airflow_local.py wait-ready
    if [ "${SMS_LOCAL_DEMO:-1}" = 1 ]; then
        # the simulator pushes paasw_v2's reports and replies to the API server's /sms mount
        spawn pusher python scripts/airflow_local.py pusher
        python scripts/airflow_local.py demo
    fi
    touch "$ROOT/ready"
    cat <<EOF

Airflow is running: $SMS_LOCAL_URL   (login: admin / $password)
  DAGs: sms_send_and_track (deferrable sensor), sms_opt_out (AssetWatcher), sms_report_sync, sms_template_mapped
  Connections: sms_paasw_v2 (pushes on), sms_paasw_v1, sms_intl, sms_account_md5, sms_cloud_mas, sms_warehouse
  Simulator: $SMS_SIMULATOR_URL/_sim/state      Logs: $ROOT/logs/
  Check it: scripts/airflow-local.sh check      Stop: Ctrl-C, or scripts/airflow-local.sh stop
EOF
    # stay up while every component does; one dying takes the rest down (the EXIT trap)
    while true; do
        while read -r name pid; do
            if [ -f "$ROOT/stopping" ]; then  # `stop` from elsewhere: it does the stopping
                trap - EXIT
                exit 0
            fi
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "$name exited; see $ROOT/logs/$name.log" >&2
                exit 1
            fi
        done < "$PIDS"
        sleep 2 &
        wait $! || true
    done
}

case "$COMMAND" in
    start) start ;;
    stop)
        if [ -z "$(running)" ] && [ -z "$(leftovers)" ]; then
            echo "nothing running under $ROOT"
        else
            stop_all
        fi
        ;;
    status)
        if [ -n "$(running)" ]; then running; else echo "nothing running under $ROOT"; fi
        ;;
    check)
        [ -f "$ROOT/ready" ] && [ -n "$(running)" ] || { echo "not running (scripts/airflow-local.sh start)" >&2; exit 1; }
        venv
        # shellcheck disable=SC1091
        source "$ROOT/env.sh"
        python scripts/airflow_local.py check
        ;;
    *)
        echo "usage: $0 [start|stop|status|check]" >&2
        exit 2
        ;;
esac
