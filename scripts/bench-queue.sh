#!/usr/bin/env bash
# Queue benchmark: builds the release `atelier` binary and benches/queue.rs, builds the
# shared SQLite baseline when it is there (into a target dir under /tmp, nothing is written
# next to it), then runs the benchmark. Takes about 3–5 minutes after the builds.
#
#   scripts/bench-queue.sh [bench options]
#
# Bench options (see benches/queue.rs): --bin PATH (default target/release/atelier, built
# here), --users N (64), --units N (10000), --concurrency N (local provider, 16),
# --baseline PATH (default: the sqlite-baseline built here).
# Environment: SQLITE_BASELINE_DIR (default ../shared/bench/sqlite-baseline),
# SQLITE_BASELINE_TARGET (default ${TMPDIR:-/tmp}/atelier-sqlite-baseline-target).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

ARGS=("$@")
has_arg() { local a; for a in "${ARGS[@]}"; do [[ "$a" == "$1" ]] && return 0; done; return 1; }

if ! has_arg --bin; then
  echo "== cargo build --release --bin atelier"
  cargo build --release --bin atelier
  ARGS+=(--bin "$ROOT/target/release/atelier")
fi

echo "== cargo bench --bench queue --no-run"
cargo bench --bench queue --no-run

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

echo "== running the queue benchmark"
cargo bench --bench queue -- "${ARGS[@]}"
