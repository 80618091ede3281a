//! `fhir-auth`: tokens and FHIR calls from the command line, and an offline demo
//! of every vendor against the embedded sandbox. See `fhir-auth --help`.

mod cli;
mod commands;
mod connect;
mod deadline;
mod demo;
mod doctor;
mod error;
mod export;
mod keys;
mod output;
mod sandbox;
mod settings;
mod writes;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use auth_fhir::FhirErrorExt;

use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::output::out_json;
use crate::settings::Settings;

/// Shows on stderr every warning the libraries log (a lifetime clamped, an `exp`
/// in milliseconds, a store failing): an operator must see what a service would
/// only log. The libraries never put a secret in a log line.
fn show_library_warnings() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = Targets::new()
        .with_target("auth_core", LevelFilter::WARN)
        .with_target("auth_fhir", LevelFilter::WARN)
        .with_target("auth_providers", LevelFilter::WARN);
    let layer = tracing_subscriber::fmt::layer()
        .without_time()
        .with_target(false)
        // anstream strips the colour when stderr is no terminal (or NO_COLOR).
        .with_writer(anstream::stderr)
        .with_ansi(true);
    let _ = tracing_subscriber::registry().with(layer.with_filter(filter)).try_init();
}

/// The deadline `command` runs under: the one given (`0`: none), else the default
/// for one-shot commands; commands that take as long as the data they move
/// (export, `--all`, the demo, the sandbox) have none unless given one.
fn deadline_of(command: Option<&Command>, given: Option<Duration>) -> Option<Duration> {
    let long = match command {
        None | Some(Command::Demo | Command::Sandbox { .. } | Command::Export { .. }) => true,
        Some(Command::Search { all, .. } | Command::History { all, .. }) => *all,
        Some(_) => false,
    };
    match given {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None if long => None,
        None => Some(deadline::DEFAULT),
    }
}

fn main() -> ExitCode {
    // clap exits 2 on usage errors and 0 for --help/--version, as the CLI promises.
    let Cli { mut opts, command } = Cli::parse();
    output::set_quiet(opts.quiet);
    if let Some(Command::Completions { shell }) = command {
        clap_complete::generate(shell, &mut Cli::command(), "fhir-auth", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    show_library_warnings();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_OTHER);
        }
    };
    let deadline = deadline_of(command.as_ref(), opts.timeout);
    let work = async {
        if command.is_none() && opts.names_a_server() {
            // `fhir-auth --provider aidbox …` without `token`: running the offline
            // demo instead would look like success.
            return Err(CliError::config(
                "connection options were given without a subcommand (token, read, search, history, create, update, patch, delete, transaction, export or doctor)",
            ));
        }
        match command.unwrap_or(Command::Demo) {
            Command::Demo => demo::run().await,
            Command::Sandbox { port } => sandbox::run(port).await,
            // Local files only: no connection.
            Command::Keys { action } => keys::run(action, opts.alg.as_deref(), &opts.private_key),
            command => {
                let conn = connect::connect(Settings::resolve(&mut opts)?)?;
                match command {
                    Command::Token => commands::token(&conn, opts.json, opts.reveal).await,
                    Command::Read { reference } => commands::read(&conn, &reference).await,
                    Command::Search { resource_type, params, all } => {
                        commands::search(&conn, &resource_type, &params, all, opts.json).await
                    }
                    Command::Create { resource_type, file } => {
                        writes::create(&conn, &resource_type, &file).await
                    }
                    Command::Update { target, file, if_match } => {
                        writes::update(&conn, &target, &file, if_match.as_deref()).await
                    }
                    Command::Delete { target } => writes::delete(&conn, &target, opts.json).await,
                    Command::Patch { target, file, if_match } => {
                        writes::patch(&conn, &target, &file, if_match.as_deref()).await
                    }
                    Command::History { target, all } => {
                        commands::history(&conn, &target, all, opts.json).await
                    }
                    Command::Transaction { file } => writes::transaction(&conn, &file, opts.json).await,
                    Command::Export {
                        out,
                        patient,
                        group,
                        types,
                        since,
                        type_filter,
                        post,
                        trust_origin,
                        cancel,
                    } => {
                        let args = export::ExportArgs {
                            out,
                            patient,
                            group,
                            types,
                            since,
                            type_filters: type_filter,
                            post,
                            trust_origins: trust_origin,
                            cancel,
                            json: opts.json,
                        };
                        export::run(&conn, args).await
                    }
                    Command::Doctor => doctor::run(&conn, opts.json).await,
                    Command::Demo
                    | Command::Sandbox { .. }
                    | Command::Completions { .. }
                    | Command::Keys { .. } => Ok(()),
                }
            }
        }
    };
    let result = runtime.block_on(async {
        match deadline {
            Some(after) => tokio::time::timeout(after, work)
                .await
                .unwrap_or_else(|_| Err(CliError::Timeout { after, what: deadline::current() })),
            None => work.await,
        }
    });
    // A request still in flight after the deadline is abandoned, not awaited.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Server text (an error_description, diagnostics) is printed, so escape
            // control characters: a server must not drive the operator's terminal.
            let text: String = e
                .to_string()
                .chars()
                .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
                .collect();
            eprintln!("error: {text}");
            // The server's own account of a FHIR failure, for the caller to read.
            if let CliError::Core(core) = &e
                && let Some(outcome) = core.operation_outcome()
            {
                out_json(outcome);
            }
            ExitCode::from(e.exit_code())
        }
    }
}
