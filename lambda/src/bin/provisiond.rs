//! `provisiond`: the provisioning backend as a local server, and its
//! operator commands.
//!
//! ```text
//! provisiond serve --listen 127.0.0.1:8080 --store sqlite:registry.db --authority authority.pub.pem
//! provisiond token add --store sqlite:registry.db --name line-1 --role factory
//! provisiond audit verify --store sqlite:registry.db
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use lambda::api::{router, AppState};
use lambda::audit::verify_chain;
use lambda::auth::{new_token, token_hash, BearerTokens};
use lambda::config::{authorities_from_files, StoreUri};
use lambda::model::Role;

/// The provisioning backend: serial allocation, device registry, device
/// authentication, audit.
#[derive(Debug, Parser)]
#[command(name = "provisiond", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (factory and admin calls need a bearer token).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The store: sqlite:PATH or dynamodb:TABLE_PREFIX[?endpoint=URL].
        #[arg(long)]
        store: StoreUri,
        /// A provisioning-authority public key (PEM) whose records activation
        /// accepts. Repeatable (key rotation).
        #[arg(long)]
        authority: Vec<PathBuf>,
    },
    /// API tokens for factory stations and administrators.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token. It is printed once, alone on the last line of stdout;
    /// the store keeps only its SHA-256.
    Add {
        /// The store: sqlite:PATH or dynamodb:TABLE_PREFIX[?endpoint=URL].
        #[arg(long)]
        store: StoreUri,
        /// A unique name for the holder (kept in the audit log).
        #[arg(long)]
        name: String,
        /// What the holder may do.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    /// Provision and activate devices, read the registry.
    Factory,
    /// Everything a factory may, and revoke devices.
    Admin,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the whole log (exit 1 naming the first bad
    /// entry).
    Verify {
        /// The store: sqlite:PATH or dynamodb:TABLE_PREFIX[?endpoint=URL].
        #[arg(long)]
        store: StoreUri,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the log, one entry per line.
    Show {
        /// The store: sqlite:PATH or dynamodb:TABLE_PREFIX[?endpoint=URL].
        #[arg(long)]
        store: StoreUri,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
}

async fn serve(
    listen: SocketAddr,
    store: StoreUri,
    authorities: Vec<PathBuf>,
) -> anyhow::Result<()> {
    let authorities = authorities_from_files(&authorities)?;
    if authorities.is_empty() {
        eprintln!("provisiond: warning: no --authority; every activation will be refused");
    }
    let store = store.open()?;
    let app = router(AppState {
        auth: Arc::new(BearerTokens::new(Arc::clone(&store))),
        store,
        authorities: Arc::new(authorities),
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    eprintln!("provisiond listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn token_add(store: &StoreUri, name: &str, role: RoleArg) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_graphic()) {
        anyhow::bail!("--name: 1 to 64 printable ASCII characters, no spaces");
    }
    let role = match role {
        RoleArg::Factory => Role::Factory,
        RoleArg::Admin => Role::Admin,
    };
    let store = store.open_with(false)?;
    let token = new_token();
    store.add_token(name, role, &token_hash(&token))?;
    eprintln!(
        "provisiond: token {name:?} ({}) created; it is shown only this once:",
        role.as_str()
    );
    println!("{token}");
    Ok(())
}

fn audit_verify(store: &StoreUri, json: bool) -> anyhow::Result<bool> {
    let log = store.open_with(false)?.audit_log()?;
    let head = log.last().map(|e| hex::encode(e.hash));
    match verify_chain(log) {
        Ok(count) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "entries": count, "head": head})
                );
            } else {
                println!("audit log intact: {count} entries");
            }
            Ok(true)
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"valid": false, "first_bad_entry": e.seq, "problem": e.problem})
                );
            } else {
                println!("audit log BROKEN at entry {}: {}", e.seq, e.problem);
            }
            Ok(false)
        }
    }
}

fn audit_show(store: &StoreUri, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let log = store.open_with(false)?.audit_log()?;
    let mut out = std::io::stdout().lock();
    for e in log {
        if json {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({
                    "seq": e.seq, "time": e.time, "actor": e.entry.actor,
                    "action": e.entry.action, "subject": e.entry.subject,
                    "outcome": e.entry.outcome, "hash": hex::encode(e.hash),
                }),
            )?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{:>6}  {}  {:<24} {:<12} {:<16} {}",
                e.seq, e.time, e.entry.actor, e.entry.action, e.entry.outcome, e.entry.subject
            )?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            listen,
            store,
            authority,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(serve(listen, store, authority))),
        Command::Token(TokenCommand::Add { store, name, role }) => token_add(&store, &name, role),
        Command::Audit(AuditCommand::Verify { store, json }) => match audit_verify(&store, json) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Audit(AuditCommand::Show { store, json }) => audit_show(&store, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("provisiond: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
