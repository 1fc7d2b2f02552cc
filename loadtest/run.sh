#!/usr/bin/env bash
# `make loadtest`: start a local cluster on loopback (its own redis-server and two gateway
# nodes), run locust headless with the surge shape for a bounded time, stop everything it
# started, write reports under loadtest/reports/locust-<UTC time>/ and print a summary.
#
#   loadtest/run.sh [--duration SECONDS] [--baseline USERS] [--nodes 1|2] [--scenarios LIST]
#
# Scenarios (LOADTEST_SCENARIOS, default chat,flood,viral): chat (chat, REST and viewer users,
# always on), flood (a like flood on one video with counts watchers, loadtest/social.py), viral
# (an author posting to many followers, loadtest/viral.py); their own checks go to scenarios.json.
#
# Environment: LOADTEST_DURATION (default 180), LOADTEST_BASELINE (20 users; the surge is 6x),
# LOADTEST_NODES (2 gateway nodes; 1 to compare),
# LOADTEST_SCRYPT_N (1024: the cluster's password-hash cost; 16384 is the production default),
# LOADTEST_RECOVERY (since: reconnected clients resubscribe with `since`; history: they read
# history instead), LOADTEST_APP_PYTHON (the app's interpreter, default .venv/bin/python),
# REDIS_SERVER. See loadtest/README.md.
# Exit status: 0 PASS, 1 FAIL (the verdict), 2 the run itself could not be done.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
DURATION=${LOADTEST_DURATION:-180}
BASELINE=${LOADTEST_BASELINE:-20}
NODES=${LOADTEST_NODES:-2}
SCENARIOS=${LOADTEST_SCENARIOS:-chat,flood,viral}
SCRYPT_N=${LOADTEST_SCRYPT_N:-1024}
APP_PY=${LOADTEST_APP_PYTHON:-$ROOT/.venv/bin/python}
REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
PYTHON=${PYTHON:-python3}
VENV=$HERE/.venv

while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --baseline) BASELINE=$2; shift 2 ;;
        --nodes) NODES=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $BASELINE =~ ^[0-9]+$ ]] || { echo "run.sh: --duration and --baseline take whole numbers" >&2; exit 2; }
[[ $NODES == 1 || $NODES == 2 ]] || { echo "run.sh: --nodes is 1 or 2" >&2; exit 2; }
[ "$DURATION" -ge 58 ] || { echo "run.sh: the four phases need --duration 58 or more" >&2; exit 2; }
[ "$BASELINE" -ge 1 ] || { echo "run.sh: --baseline needs at least 1 user" >&2; exit 2; }
[ -x "$APP_PY" ] || { echo "run.sh: $APP_PY is missing: run 'make venv' first" >&2; exit 2; }
[ -x "$REDIS_SERVER" ] || { echo "run.sh: $REDIS_SERVER is missing: run 'make services' first" >&2; exit 2; }

# Locust's own virtual environment, never shared with the app (rebuilt when the pins change).
if ! cmp -s "$HERE/requirements.txt" "$VENV/.requirements.txt" 2>/dev/null; then
    echo "creating $VENV (locust)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    if ! { "$VENV/bin/pip" install --upgrade pip && "$VENV/bin/pip" install -r "$HERE/requirements.txt"; } \
        >"$VENV/install.log" 2>&1; then
        tail -n 20 "$VENV/install.log" >&2
        rm -rf "$VENV"
        exit 2
    fi
    cp "$HERE/requirements.txt" "$VENV/.requirements.txt"
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$HERE/reports/locust-$STAMP
mkdir -p "$OUT"
ln -sfn "locust-$STAMP" "$HERE/reports/locust-latest"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/moosic-loadtest.XXXXXX")

NODE_PIDS=()
REDIS_PID=
LOCUST_PID=
# Stop what this script started, by process id: locust, then the gateway nodes, then Redis.
stop() {
    local signal=$1 pid alive
    shift
    for pid in "$@"; do kill "-$signal" "$pid" 2>/dev/null || true; done
    for _ in $(seq 75); do
        alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && return
        sleep 0.2
    done
    for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}
cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    [ -z "$LOCUST_PID" ] || stop INT "$LOCUST_PID"  # locust still writes its reports
    [ ${#NODE_PIDS[@]} = 0 ] || stop TERM "${NODE_PIDS[@]}"
    [ -z "$REDIS_PID" ] || stop TERM "$REDIS_PID"
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r REDIS_PORT PORT1 PORT2 < <("$PYTHON" - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)

"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --logfile "$OUT/redis.log" &
REDIS_PID=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
    sleep 0.1
done

SECRET=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))')
# Every simulated user comes from 127.0.0.1, so limits counted per client address (register,
# login, refresh, REST as a whole, connections per address) would throttle the load generator
# itself; real users come from many addresses. Per-user limits stay as in production.
EXTRA_ENV=()
if "$APP_PY" -c 'import sys; from gateway.settings import FIELDS; sys.exit("RATE_LIMITS" not in FIELDS)' 2>/dev/null; then
    LIMITS="register=off,login=off,refresh=off,rest=off,connect_ip=off"
    # A fan in the like flood likes faster than a person may.
    [[ ",$SCENARIOS," == *,flood,* ]] && LIMITS="$LIMITS,like=off,unlike=off"
    EXTRA_ENV+=("MOOSIC_RATE_LIMITS=$LIMITS")
fi
if "$APP_PY" -c 'import sys; from gateway.settings import FIELDS; sys.exit("HTTP_MAX_UNAUTHENTICATED_PER_ADDRESS" not in FIELDS)' 2>/dev/null; then
    EXTRA_ENV+=("MOOSIC_HTTP_MAX_UNAUTHENTICATED_PER_ADDRESS=0")  # a reconnect storm's handshakes
fi
# The flood and viral users make ready videos with POST /v1/videos (no media pipeline here).
if [[ ",$SCENARIOS," == *,flood,* || ",$SCENARIOS," == *,viral,* ]]; then
    EXTRA_ENV+=("MOOSIC_VIDEO_READY_ON_CREATE=1")
fi
# One node at a time: the nodes share a new SQLite file, and two nodes creating it at the same
# moment can fail with "database is locked" (seen here; a rolling start is what deploys do).
wait_ready() {
    local port=$1 pid=$2
    for _ in $(seq 150); do
        curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && return 0
        kill -0 "$pid" 2>/dev/null || break  # it exited: no point waiting
        sleep 0.2
    done
    echo "run.sh: the gateway on port $port did not become ready; its log:" >&2
    tail -n 20 "$OUT"/node*.log >&2
    return 1
}
PORTS=()
for i in $(seq "$NODES"); do
    port_var=PORT$i
    # A clean environment: the gateway refuses unknown MOOSIC_* variables, and this cluster
    # must not pick up the caller's settings.
    (cd "$ROOT" && exec env -i PATH="$PATH" HOME="${HOME:-/root}" LANG=C.UTF-8 \
        MOOSIC_HOST=127.0.0.1 MOOSIC_PORT="${!port_var}" MOOSIC_DEV=1 \
        MOOSIC_JWT_SECRET="$SECRET" MOOSIC_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
        MOOSIC_SQLITE_PATH="$WORK/moosic.db" MOOSIC_SCRYPT_N="$SCRYPT_N" \
        MOOSIC_LOG_LEVEL=WARNING ${EXTRA_ENV[@]+"${EXTRA_ENV[@]}"} \
        "$APP_PY" -m gateway >"$OUT/node$i.log" 2>&1) &
    NODE_PIDS+=($!)
    PORTS+=("${!port_var}")
    wait_ready "${!port_var}" "${NODE_PIDS[-1]}" || exit 2
done

HOSTS=
WATCH="redis:$REDIS_PID"
for i in "${!PORTS[@]}"; do
    HOSTS+="${HOSTS:+,}http://127.0.0.1:${PORTS[$i]}"
    WATCH+=",nodes:${NODE_PIDS[$i]}"
done
echo "cluster up: redis :$REDIS_PORT, gateway nodes ${PORTS[*]/#/:} (scrypt N=$SCRYPT_N)"
[ ${#EXTRA_ENV[@]} = 0 ] || echo "  ${EXTRA_ENV[*]} (all users share one address)"
echo "running locust for ${DURATION} s, baseline $BASELINE users, surge $((BASELINE * 6)); reports in ${OUT#"$ROOT"/}"

RUN_ID=$(printf '%s' "$STAMP" | tr -dc '0-9' | tail -c 6)
LIMIT=$((DURATION + 60))
# In the background, so that a TERM or INT sent to this script is handled at once (the trap
# interrupts `wait`, and the cleanup hands locust an INT of its own).
(
    cd "$HERE" && exec env \
        LOADTEST_HOSTS="$HOSTS" \
        LOADTEST_DURATION="$DURATION" LOADTEST_BASELINE="$BASELINE" LOADTEST_OUT="$OUT" \
        LOADTEST_RUN_ID="$RUN_ID" LOADTEST_SCENARIOS="$SCENARIOS" \
        LOADTEST_PIDS="$WATCH" \
        timeout --signal=INT --kill-after=20 "$LIMIT" \
        "$VENV/bin/locust" -f locustfile.py --headless --run-time "$((DURATION + 30))s" \
        --stop-timeout 5 --csv "$OUT/locust" --html "$OUT/report.html" \
        --loglevel WARNING --logfile "$OUT/locust.log"
) >"$OUT/locust.out" 2>&1 &
LOCUST_PID=$!
locust_status=0
wait "$LOCUST_PID" || locust_status=$?
LOCUST_PID=
if [ ! -f "$OUT/phases.csv" ]; then
    echo "run.sh: locust ended (status $locust_status) without its reports; see $OUT/locust.out" >&2
    tail -n 20 "$OUT/locust.out" >&2
    exit 2
fi

for i in "${!PORTS[@]}"; do
    curl -fs "http://127.0.0.1:${PORTS[$i]}/metrics" >"$OUT/metrics-node$((i + 1)).txt" || true
done
for i in $(seq "$NODES"); do
    errors=$(grep -cE 'ERROR|Traceback' "$OUT/node$i.log" || true)
    [ "$errors" = 0 ] || echo "node $i logged $errors error lines: $OUT/node$i.log"
done
echo
set +e
"$VENV/bin/python" "$HERE/summary.py" "$OUT" | tee "$OUT/summary.txt"
verdict=${PIPESTATUS[0]}
set -e
echo "reports: ${OUT#"$ROOT"/} (report.html, locust_*.csv, phases.csv, checks.csv, node logs)"
exit "$verdict"
