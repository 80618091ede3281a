//! `fhir-auth`: tokens and FHIR calls from the command line, and an offline demo
//! of every vendor against the embedded sandbox. See `fhir-auth --help`.

mod cli;
mod commands;
mod connect;
mod demo;
mod error;
mod export;
mod keys;
mod output;
mod sandbox;
mod settings;
mod writes;

use std::process::ExitCode;

use clap::Parser;

use auth_fhir::FhirErrorExt;

use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::output::out_json;
use crate::settings::Settings;

fn main() -> ExitCode {
    // clap exits 2 on usage errors and 0 for --help/--version, as the CLI promises.
    let Cli { mut opts, command } = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_OTHER);
        }
    };
    let result = runtime.block_on(async {
        if command.is_none() && opts.names_a_server() {
            // `fhir-auth --provider aidbox …` without `token`: running the offline
            // demo instead would look like success.
            return Err(CliError::config(
                "connection options were given without a subcommand (token, read, search, history, create, update, patch, delete, transaction or export)",
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
                    Command::Create { resource_type, file } => writes::create(&conn, &resource_type, &file).await,
                    Command::Update { target, file, if_match } => {
                        writes::update(&conn, &target, &file, if_match.as_deref()).await
                    }
                    Command::Delete { target } => writes::delete(&conn, &target, opts.json).await,
                    Command::Patch { target, file, if_match } => {
                        writes::patch(&conn, &target, &file, if_match.as_deref()).await
                    }
                    Command::History { target, all } => commands::history(&conn, &target, all, opts.json).await,
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
                    Command::Demo | Command::Sandbox { .. } | Command::Keys { .. } => Ok(()),
                }
            }
        }
    });
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
