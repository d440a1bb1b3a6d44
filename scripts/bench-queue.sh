#!/usr/bin/env bash
# Queue benchmark (benches/queue.rs): builds the release `atelier` binary, the benchmark
# and the shared SQLite baseline (see bench-lib.sh), then runs it. Takes about 3–5
# minutes after the builds.
#
#   scripts/bench-queue.sh [bench options]
#
# Bench options (see benches/queue.rs): --bin PATH (default target/release/atelier, built
# here), --users N (64), --units N (10000), --concurrency N (local provider, 16),
# --baseline PATH (default: the sqlite-baseline built here).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_run queue "$@"
