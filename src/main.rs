//! The `atelier` binary: parse the command line, load the configuration, run.

use clap::Parser;

use atelier::cli::{self, Cli};
use atelier::config::Config;

/// jemalloc instead of glibc's allocator: glibc kept the 19 MiB argon2 blocks of a
/// login burst resident (64 signups + 64 logins: 31 → 396 MiB, and it stayed there);
/// jemalloc returns them (34 → 37 MiB). `scripts/login-storm.py` measures it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let args = Cli::parse();
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(2);
        }
    };
    cli::init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(cli::run(args.command, config)) {
        eprintln!("error: {}", err.message);
        std::process::exit(err.exit_code);
    }
}
