#!/usr/bin/env bash
# /rest/v1 and /realtime/v1 benchmark (benches/rest.rs): builds the release `atelier`
# binary, the benchmark and the shared SQLite baseline (see bench-lib.sh), then runs it.
# Takes about 2 minutes after the builds.
#
#   scripts/bench-rest.sh [bench options]
#
# Bench options: --bin PATH (default target/release/atelier, built here), --clients N
# (64), --secs S (8, per round), --sockets N (1000), --jobs N (20), --baseline PATH
# (default: the sqlite-baseline built here), --keep.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
# 1,000 sockets on each side, plus the HTTP clients.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
bench_run rest "$@"
