# Sourced by scripts/bench-*.sh: `bench_run NAME [bench options]` builds the release
# `atelier` binary (unless --bin is given) and benches/NAME.rs, builds the shared SQLite
# baseline when it is there (unless --baseline is given; into a target dir under /tmp,
# nothing is written next to it), then runs the benchmark.
# Environment: SQLITE_BASELINE_DIR (default ../shared/bench/sqlite-baseline),
# SQLITE_BASELINE_TARGET (default ${TMPDIR:-/tmp}/atelier-sqlite-baseline-target).
set -euo pipefail

bench_run() {
  local name="$1"
  shift
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cd "$root"
  export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
  local target="${CARGO_TARGET_DIR:-$root/target}"
  local args=("$@")
  has_arg() { local a; for a in "${args[@]}"; do [[ "$a" == "$1" ]] && return 0; done; return 1; }

  if ! has_arg --bin; then
    echo "== cargo build --release --bin atelier"
    cargo build --release --bin atelier
    args+=(--bin "$target/release/atelier")
  fi

  echo "== cargo bench --bench $name --no-run"
  cargo bench --bench "$name" --no-run

  local baseline_dir="${SQLITE_BASELINE_DIR:-$root/../shared/bench/sqlite-baseline}"
  if ! has_arg --baseline; then
    if [[ -f "$baseline_dir/Cargo.toml" ]]; then
      local baseline_target="${SQLITE_BASELINE_TARGET:-${TMPDIR:-/tmp}/atelier-sqlite-baseline-target}"
      echo "== building $baseline_dir into $baseline_target"
      (cd "$baseline_dir" && CARGO_TARGET_DIR="$baseline_target" cargo build --release --locked)
      args+=(--baseline "$baseline_target/release/sqlite-baseline")
    else
      echo "== no SQLite baseline at $baseline_dir: the ratio will be skipped"
    fi
  fi

  echo "== running the $name benchmark"
  cargo bench --bench "$name" -- "${args[@]}"
}
