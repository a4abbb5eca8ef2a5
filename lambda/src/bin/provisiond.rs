//! `provisiond`: the provisioning backend as a local server.
//!
//! `provisiond serve --listen 127.0.0.1:8080 --store sqlite:registry.db`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use firmware::P256PublicKey;
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
        /// A provisioning-authority public key (PEM) whose records activation
        /// accepts. Repeatable.
        #[arg(long)]
        authority: Vec<PathBuf>,
    },
}

fn store_path(s: &str) -> Result<PathBuf, String> {
    match s.strip_prefix("sqlite:") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(format!("{s:?}: expected sqlite:PATH")),
    }
}

fn load_authority(path: &PathBuf) -> anyhow::Result<P256PublicKey> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    let pem =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let key = p256::PublicKey::from_public_key_pem(&pem)
        .map_err(|_| anyhow::anyhow!("{}: not a P-256 public key (PEM)", path.display()))?;
    P256PublicKey::from_sec1(key.to_encoded_point(false).as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

async fn serve(
    listen: SocketAddr,
    store: PathBuf,
    authorities: Vec<PathBuf>,
) -> anyhow::Result<()> {
    let authorities = authorities
        .iter()
        .map(load_authority)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store =
        SqliteStore::open(&store).map_err(|e| anyhow::anyhow!("{}: {e}", store.display()))?;
    let app = router(AppState {
        store: Arc::new(store),
        authorities: Arc::new(authorities),
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
    let Command::Serve {
        listen,
        store,
        authority,
    } = cli.command;
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
    match rt.block_on(serve(listen, store, authority)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
