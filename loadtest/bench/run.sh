#!/usr/bin/env bash
# Head-to-head benchmark (issue 3): the gateway vs python-socketio vs Node socket.io.
#
#   bash loadtest/bench/run.sh [--quick] [--targets moosic,pysio,sionode] [--scenarios s1,s2,s3,s4]
#
# Installs what it needs under loadtest/bench/.work/ (git-ignored): the load generator's venv,
# the python-socketio venv and the socket.io node_modules; runs `make venv` for the gateway.
# Every server it starts listens on 127.0.0.1 only, pinned to core 0; the load generator runs
# on core 1. Every process it starts is stopped on exit, failure, Ctrl-C or SIGTERM.
# The report goes to loadtest/reports/ (JSON + markdown); the markdown is also printed.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH/../.." && pwd)"
WORK="$BENCH/.work"
PIDFILE="$WORK/run/pids"
PYTHON="${PYTHON:-python3}"
HARNESS_PID=""

log() { printf '[bench] %s\n' "$*" >&2; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$HARNESS_PID" ]] && kill -0 "$HARNESS_PID" 2>/dev/null; then
    # The harness stops its own servers on SIGTERM; give it a few seconds to do so.
    kill -TERM "$HARNESS_PID" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$HARNESS_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$HARNESS_PID" 2>/dev/null || true
  fi
  # Belt and braces: every server was started in its own process group, listed here.
  if [[ -f "$PIDFILE" ]]; then
    while read -r pid; do
      if [[ -n "$pid" ]]; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    done <"$PIDFILE"
    rm -f "$PIDFILE"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in taskset node npm redis-server timeout "$PYTHON"; do
  command -v "$tool" >/dev/null || { log "missing tool: $tool"; exit 1; }
done
if [[ "$(nproc)" -lt 2 ]]; then
  log "needs 2 cores (server on core 0, load generator on core 1)"
  exit 1
fi

# venv DIR REQUIREMENTS: (re)create DIR when the requirements changed since it was made.
venv() {
  local dir=$1 requirements=$2
  if [[ -x "$dir/bin/python" ]] && cmp -s "$requirements" "$dir/.requirements"; then
    return
  fi
  log "installing $(basename "$dir") venv"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  if ! "$dir/bin/pip" install --disable-pip-version-check -r "$requirements" >"$dir.log" 2>&1; then
    tail -n 30 "$dir.log" >&2
    exit 1
  fi
  cp "$requirements" "$dir/.requirements"
}

mkdir -p "$WORK/run"
venv "$WORK/client" "$BENCH/requirements-client.txt"
venv "$WORK/pysio" "$BENCH/baselines/requirements-pysio.txt"

SIONODE="$BENCH/baselines/sionode"
if [[ ! -d "$WORK/sionode/node_modules" ]] ||
  ! cmp -s "$SIONODE/package-lock.json" "$WORK/sionode/package-lock.json"; then
  log "installing socket.io node_modules"
  rm -rf "$WORK/sionode"
  mkdir -p "$WORK/sionode"
  cp "$SIONODE/package.json" "$SIONODE/package-lock.json" "$WORK/sionode/"
  (cd "$WORK/sionode" && npm ci --no-audit --no-fund --loglevel=error)
fi

if [[ -f "$REPO/gateway/__main__.py" ]] && grep -q '^venv:' "$REPO/Makefile" 2>/dev/null; then
  log "preparing the gateway's venv (make venv)"
  make -s -C "$REPO" venv >"$WORK/make-venv.log" 2>&1 ||
    log "make venv failed (see $WORK/make-venv.log): the gateway may not start"
fi

# 10,000 idle sockets need 10,000 descriptors on each side.
ulimit -n "$(ulimit -Hn)"

LIMIT_S=5100
if [[ " $* " == *" --quick "* ]]; then LIMIT_S=1500; fi
: >"$PIDFILE"
export BENCH_COMMAND="bash loadtest/bench/run.sh $*"
cd "$BENCH"
timeout -s TERM -k 30 "$LIMIT_S" taskset -c 1 "$WORK/client/bin/python" -m benchkit "$@" &
HARNESS_PID=$!
wait "$HARNESS_PID"
