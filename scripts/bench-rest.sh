#!/usr/bin/env bash
# /rest/v1 and /realtime/v1 benchmark: builds the release `atelier` binary and
# benches/rest.rs, builds the shared SQLite baseline when it is there (into a target dir
# under /tmp, nothing is written next to it), then runs the benchmark. Takes about
# 2 minutes after the builds.
#
#   scripts/bench-rest.sh [bench options]
#
# Bench options (see benches/rest.rs): --bin PATH (default target/release/atelier, built
# here), --clients N (64), --secs S (8, per round), --sockets N (1000), --jobs N (20),
# --baseline PATH (default: the sqlite-baseline built here), --keep.
# Environment: SQLITE_BASELINE_DIR (default ../shared/bench/sqlite-baseline),
# SQLITE_BASELINE_TARGET (default ${TMPDIR:-/tmp}/atelier-sqlite-baseline-target).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

ARGS=("$@")
has_arg() { local a; for a in "${ARGS[@]}"; do [[ "$a" == "$1" ]] && return 0; done; return 1; }

# 1,000 sockets on each side, plus the HTTP clients.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if ! has_arg --bin; then
  echo "== cargo build --release --bin atelier"
  cargo build --release --bin atelier
  ARGS+=(--bin "$TARGET/release/atelier")
fi

echo "== cargo bench --bench rest --no-run"
cargo bench --bench rest --no-run

BASELINE_DIR="${SQLITE_BASELINE_DIR:-$ROOT/../shared/bench/sqlite-baseline}"
if ! has_arg --baseline; then
  if [[ -f "$BASELINE_DIR/Cargo.toml" ]]; then
    BASELINE_TARGET="${SQLITE_BASELINE_TARGET:-${TMPDIR:-/tmp}/atelier-sqlite-baseline-target}"
    echo "== building $BASELINE_DIR into $BASELINE_TARGET"
    (cd "$BASELINE_DIR" && CARGO_TARGET_DIR="$BASELINE_TARGET" cargo build --release --locked)
    ARGS+=(--baseline "$BASELINE_TARGET/release/sqlite-baseline")
  else
    echo "== no SQLite baseline at $BASELINE_DIR: the ratio will be skipped"
  fi
fi

echo "== running the rest/realtime benchmark"
cargo bench --bench rest -- "${ARGS[@]}"
