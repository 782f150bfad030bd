//! # eventide (binary)
//!
//! The command line and the wiring: `serve` assembles the log, store, query engine and HTTP
//! routes; `query`, `import` and `keys` are clients and tools. No logic another crate should
//! own lives here.
//!
//! # Layout
//! - `serve`: configuration, startup order (log → store replay → ingest registry → HTTP),
//!   graceful shutdown.
//! - `api`: the query routes and the JSON error shape for them, `/healthz`, fallbacks.
//! - `cli`: the `query` and `import` clients; `deploycmd`: `eventide deploy [--wait]`;
//!   `logcmd`: `eventide log verify|repair`.
//! - `config`: `serve --config FILE` (TOML settings under the command line and environment).
//! - `metrics`: `GET /metrics`; `selfevents`: Eventide's own request events (`--self-dataset`).

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

mod alerts;
mod api;
mod cli;
mod config;
mod deploycmd;
mod faultpoints;
mod logcmd;
mod markers;
mod metrics;
mod selfevents;
mod serve;
mod tail;
mod tls;

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Eventide: wide events in over HTTP, a durable log, a columnar store, DataFusion queries.
#[derive(Debug, Parser)]
#[command(name = "eventide", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start: the size of the serve variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the server: ingest, store and query in one process, or one role of a Kafka
    /// deployment (--role).
    Serve(serve::ServeArgs),
    /// Run SQL or a query spec against a running server and print the result.
    Query(cli::QueryArgs),
    /// Post a deploy marker; with --wait, wait for its deploy check and exit 0 on pass, 1 on
    /// fail, 2 on inconclusive (3: no verdict before --timeout, or the server unreachable).
    Deploy(deploycmd::DeployArgs),
    /// Bulk-load an NDJSON file (optionally .gz or .zst) into a dataset of a running server.
    Import(cli::ImportArgs),
    /// Check or repair the embedded log of a data directory (the server must be stopped to
    /// repair).
    Log {
        #[command(subcommand)]
        command: logcmd::LogCommand,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key, store its hash under the data directory and print the secret once.
    Create {
        /// What the key may do: ingest (send events), query (run queries) or admin (everything).
        #[arg(long)]
        scope: String,
        /// Limit the key to datasets matching this pattern (`*` matches any characters).
        #[arg(long)]
        dataset: Option<String>,
        /// Most events per second the key may send; more gets 429 with `Retry-After`.
        #[arg(long)]
        rate_limit: Option<u32>,
        /// Data directory of the server that will accept the key.
        #[arg(long, env = "EVENTIDE_DATA_DIR", default_value = "./eventide-data")]
        data_dir: PathBuf,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVENTIDE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Parses the command line, with `eventide serve --config FILE` applied ([`config`]).
fn parse() -> Cli {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = Cli::command().get_matches_from(&argv);
    if let Some(("serve", serve_matches)) = matches.subcommand() {
        let command = Cli::command();
        let serve = command
            .find_subcommand("serve")
            .expect("the serve subcommand is defined");
        let argv = match config::with_config_file(argv.clone(), serve, serve_matches) {
            Ok(argv) => argv,
            Err(e) => {
                // The status clap gives a bad flag.
                eprintln!("error: {e}");
                std::process::exit(2)
            }
        };
        return match Cli::try_parse_from(argv) {
            Ok(cli) => cli,
            // Only the config file's settings were added: say where the bad one came from.
            Err(e) if e.use_stderr() => {
                let path = serve_matches
                    .get_one::<PathBuf>("config")
                    .map_or_else(String::new, |p| p.display().to_string());
                eprintln!("in config file {path}:");
                e.exit()
            }
            Err(e) => e.exit(),
        };
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> anyhow::Result<()> {
    let cli = parse();
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Query(args) => cli::query(args).await,
            Command::Import(args) => cli::import(args).await,
            Command::Deploy(args) => {
                let code = deploycmd::run(args).await;
                std::process::exit(code)
            }
            Command::Log { command } => logcmd::run(command),
            Command::Keys {
                command:
                    KeysCommand::Create {
                        scope,
                        dataset,
                        rate_limit,
                        data_dir,
                    },
            } => {
                let scope = eventide_ingest::Scope::parse(&scope)
                    .ok_or_else(|| anyhow::anyhow!("scope must be ingest, query or admin"))?;
                let secret =
                    eventide_ingest::auth::create_key(&data_dir, scope, dataset, rate_limit)?;
                println!("{secret}");
                Ok(())
            }
        }
    })
}
