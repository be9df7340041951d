//! berth: the CLI, a drop-in for the docker CLI.
//!
//! Owns: argument parsing (docker's commands, aliases, flags, messages, exit codes), talking
//! to a daemon over the Docker Engine API, and printing exactly what docker prints.
//! Must not: link or call daemon crates (berthd is reached only through the API, like any
//! Docker client), or touch daemon state on disk. One module per command group under
//! `commands/`; shared output code in `format/`, connection code in `client`.
//! The exception is `berth registry`, which runs a registry (crates/registry) in-process.
//!
//! Start-up is on the path of every `berth run`, so it stays small: clap defines only the
//! subcommand being parsed (`cli::Lazy`), client commands run on a one-thread tokio runtime,
//! the binary uses packed relative relocations (build.rs), and `run`/`create` send their
//! first request without the version ping (`Client::unverified`). Where the time goes:
//! bench/README.md ("The CLI's share").

mod cli;
mod client;
mod commands;
mod credentials;
mod error;
mod format;
mod help;

use std::io::Write;

use clap::Parser;

use crate::cli::{Cli, clap_error};
use crate::error::CliError;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    // `berth --version` alone: nothing for clap to build or parse (scripts call it often).
    if let [_, flag] = argv.as_slice()
        && (flag == "--version" || flag == "-v")
    {
        print_version();
        return;
    }
    let code = match Cli::try_parse_from(&argv) {
        Err(e) => report(clap_error(e, &argv)),
        Ok(cli) => run(cli, &argv),
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn run(cli: Cli, argv: &[String]) -> i32 {
    if cli.version {
        print_version();
        return 0;
    }
    // A client waits on the daemon, one thread is enough and saves starting two workers; the
    // registry is a server of its own and gets the worker threads.
    let mut builder = if matches!(cli.command, Some(cli::Cmd::Registry(_))) {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return report(CliError::msg(format!("cannot start runtime: {e}"))),
    };
    let r = rt.block_on(commands::dispatch(cli, argv));
    // Don't wait for tasks still blocked on stdin or a hijacked socket.
    rt.shutdown_background();
    match r {
        Ok(()) => 0,
        Err(e) => report(e),
    }
}

fn print_version() {
    // A closed stdout is not an error worth a panic here.
    let _ = writeln!(
        std::io::stdout(),
        "berth version {}, build {}",
        env!("CARGO_PKG_VERSION"),
        commands::system::GIT_COMMIT
    );
}

fn report(e: CliError) -> i32 {
    if !e.message.is_empty() {
        let _ = std::io::stdout().flush();
        eprintln!("{}", e.message);
    }
    e.code
}
