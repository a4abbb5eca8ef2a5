//! `provisiond`: the provisioning backend as a local server.
//!
//! `provisiond serve --listen 127.0.0.1:8080 --store sqlite:registry.db`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use lambda::api::{router, AppState};
use lambda::SqliteStore;

/// The provisioning backend (serial allocation, device registry, audit).
#[derive(Debug, Parser)]
#[command(name = "provisiond", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The store: sqlite:PATH.
        #[arg(long, value_parser = store_path)]
        store: PathBuf,
    },
}

fn store_path(s: &str) -> Result<PathBuf, String> {
    match s.strip_prefix("sqlite:") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(format!("{s:?}: expected sqlite:PATH")),
    }
}

async fn serve(listen: SocketAddr, store: PathBuf) -> anyhow::Result<()> {
    let store =
        SqliteStore::open(&store).map_err(|e| anyhow::anyhow!("{}: {e}", store.display()))?;
    let app = router(AppState {
        store: Arc::new(store),
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    eprintln!("provisiond listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Serve { listen, store } = cli.command;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(listen, store)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
