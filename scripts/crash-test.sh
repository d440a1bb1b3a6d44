#!/usr/bin/env bash
# Crash test: submits 300 generation jobs (about 390 units) to a real `atelier serve`
# while `kill -9`-ing and restarting it five times, then checks that no credit was lost
# or double-spent and that every job ended.
#
#   scripts/crash-test.sh [path/to/atelier]     (default: target/debug/atelier, built if missing)
#
# Environment: CRASH_TEST_SEED (kill timings and jitter; default random, printed),
# CRASH_TEST_KEEP=1 (keep the temp dir), CRASH_TEST_DRAIN_TIMEOUT (seconds, default 180).
# Needs python3 (standard library only) — scripts/crash_check.py does the HTTP and SQLite work.
# Exit status: 0 when every check passes, 1 otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELPER="$ROOT/scripts/crash_check.py"
JOBS=300
GRANT=1000
KILLS=5
DRAIN_TIMEOUT="${CRASH_TEST_DRAIN_TIMEOUT:-180}"
SEED="${CRASH_TEST_SEED:-$((RANDOM * 32768 + RANDOM))}"
RANDOM=$SEED

if [[ $# -ge 1 ]]; then
  BIN="$1"
else
  BIN="$ROOT/target/debug/atelier"
  if [[ ! -x "$BIN" ]]; then
    echo "== building $BIN"
    (cd "$ROOT" && cargo build --bin atelier)
  fi
fi
[[ -x "$BIN" ]] || { echo "no executable atelier binary at $BIN" >&2; exit 1; }
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

# A hermetic environment: no ATELIER_* from the caller, no ./config.toml.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep '^ATELIER_' || true)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/atelier-crash.XXXXXX")"
SERVER_PID=""
SUBMIT_PID=""
cleanup() {
  local rc=$?
  for pid in "$SUBMIT_PID" "$SERVER_PID"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [[ "${CRASH_TEST_KEEP:-0}" == 1 ]]; then
    echo "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
: >"$WORK/config.toml"
export ATELIER_CONFIG="$WORK/config.toml"
export ATELIER_DATA_DIR="$WORK/data"
export ATELIER_SERVER_BIND="127.0.0.1:$PORT"
export ATELIER_AUTH_SIGNUP_BONUS_CREDITS=0
export ATELIER_AUTH_RATE_LIMIT_PER_MINUTE=600
export ATELIER_PROVIDERS_LOCAL_DELAY_MS=300
export ATELIER_PROVIDERS_LOCAL_CONCURRENCY=4
export ATELIER_LOG_FORMAT=json

# Optional keys: passed only when this binary knows them (an unknown key is exit code 2).
accepts() { env "$@" "$BIN" config check >/dev/null 2>&1; }
OPTIONAL=()
for kv in ATELIER_PROVIDERS_LOCAL_TINY_OUTPUT=true \
          ATELIER_LIMITS_ACTIVE_JOBS_IMAGE_GEN=100000 \
          ATELIER_LIMITS_JOB_CREATIONS_PER_MINUTE=100000; do
  if accepts "$kv"; then
    export "${kv?}"
    OPTIONAL+=("${kv%%=*}")
  fi
done
"$BIN" config check >/dev/null || { echo "the configuration is not accepted" >&2; exit 1; }

echo "== crash test: $BIN"
echo "   seed $SEED, port $PORT, data $WORK/data, local provider 300 ms x 4"
echo "   optional keys in force: ${OPTIONAL[*]:-none}"

helper() { python3 "$HELPER" "$@" --base "$BASE" --work "$WORK"; }

"$BIN" migrate >"$WORK/cli.log" 2>&1
"$BIN" user create --email crash@example.com --password crash-test-password >>"$WORK/cli.log" 2>&1
"$BIN" credits grant --email crash@example.com --amount "$GRANT" --reason "crash test" >>"$WORK/cli.log" 2>&1

SERVER_STARTS=0
start_server() {
  SERVER_STARTS=$((SERVER_STARTS + 1))
  echo "--- start $SERVER_STARTS" >>"$WORK/server.log"
  "$BIN" serve >>"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  local deadline=$((SECONDS + 30))
  until helper health; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "the server exited at start $SERVER_STARTS; last log lines:" >&2
      tail -n 20 "$WORK/server.log" >&2
      exit 1
    fi
    if ((SECONDS > deadline)); then
      echo "the server was not healthy within 30 s (start $SERVER_STARTS)" >&2
      exit 1
    fi
    sleep 0.1
  done
}

random_sleep() { # 0.5–3 s
  local ms=$((500 + RANDOM % 2501))
  sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
}

T0=$SECONDS
start_server
helper login

helper submit --run "$SEED" --jobs "$JOBS" --seed "$SEED" &
SUBMIT_PID=$!

for k in $(seq 1 "$KILLS"); do
  random_sleep
  submitting=$(kill -0 "$SUBMIT_PID" 2>/dev/null && echo "while submitting" || echo "after submitting")
  kill -9 "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  echo "   kill -9 #$k at +$((SECONDS - T0)) s ($submitting)"
  sleep "0.$((2 + RANDOM % 5))" # down for 0.2–0.6 s, as under a process supervisor
  start_server
done

FAIL=0
if ! wait "$SUBMIT_PID"; then FAIL=1; fi
SUBMIT_PID=""

helper drain --timeout "$DRAIN_TIMEOUT" || FAIL=1

# A clean stop, so the checks below read a quiet database.
kill -TERM "$SERVER_PID"
for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "   the server did not stop on SIGTERM within 10 s; killing it"
  kill -9 "$SERVER_PID"
fi
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

if "$BIN" audit >"$WORK/audit.log" 2>&1; then
  echo "audit: $(tail -n 1 "$WORK/audit.log")"
else
  echo "audit: FAILED (exit $?)"
  head -n 20 "$WORK/audit.log"
  FAIL=1
fi

helper db --grant "$GRANT" || FAIL=1

PANICS=$(grep -c 'panicked' "$WORK/server.log" || true)
ERRORS=$(grep -c '"level":"ERROR"' "$WORK/server.log" || true)
RECOVERED=$(grep -c 'recovering a unit' "$WORK/server.log" || true)
echo "server: $SERVER_STARTS starts, $KILLS kills, $RECOVERED units recovered after a restart," \
  "$ERRORS ERROR log lines, $PANICS panics"
if ((ERRORS > 0)); then grep '"level":"ERROR"' "$WORK/server.log" | head -n 5 | cut -c1-400; fi

echo "== crash test $([[ $FAIL == 0 ]] && echo PASSED || echo FAILED) in $((SECONDS - T0)) s (seed $SEED)"
exit "$FAIL"
