//! The `atelier` binary: parse the command line, load the configuration, run.

use clap::Parser;

use atelier::cli::{self, Cli};
use atelier::config::Config;

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
