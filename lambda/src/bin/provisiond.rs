//! `provisiond`: the provisioning backend as a local server, and its
//! operator commands.
//!
//! ```text
//! provisiond serve --listen 127.0.0.1:8080 --store sqlite:registry.db --authority authority.pub.pem
//! provisiond token add --store sqlite:registry.db --name line-1 --role factory --valid-for 90d
//! provisiond token list --store sqlite:registry.db
//! provisiond token revoke --store sqlite:registry.db --name line-1
//! provisiond audit verify --store sqlite:registry.db
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use lambda::api::{router, AppState};
use lambda::audit::verify_chains;
use lambda::auth::{new_token, token_hash, BearerTokens};
use lambda::config::{authorities_from_files, StoreUri};
use lambda::guard::{DeviceGuard, Limits, Rate};
use lambda::model::{check_token_name, Role};
use lambda::Wait;

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
    Serve(ServeArgs),
    /// API tokens for factory stations and administrators.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Production orders: what a factory bound to one may create.
    #[command(subcommand)]
    Order(OrderCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
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
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs
    /// --tls-key. Without it the server speaks plain HTTP, which the
    /// factory accepts only on this machine.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Device requests (/v1/auth/*) per second from one client address
    /// (bursts of twice that; 0: no limit).
    #[arg(long, value_name = "N", default_value_t = 50.0)]
    auth_rate_per_source: f64,
    /// Device requests per second about one serial (bursts of twice
    /// that; 0: no limit).
    #[arg(long, value_name = "N", default_value_t = 2.0)]
    auth_rate_per_serial: f64,
    /// Sign the audit chain's head with this key (file:, pkcs11: or
    /// awskms: URI) at every --checkpoint-every and when stopping.
    #[arg(long, value_name = "URI")]
    checkpoint_key: Option<signer::KeyRef>,
    /// How often to checkpoint (with --checkpoint-key).
    #[arg(long, value_name = "DURATION", value_parser = parse_validity, default_value = "5m")]
    checkpoint_every: std::time::Duration,
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
        /// Refuse the token after this long (e.g. 90d, 12h); without it the
        /// token lasts until revoked.
        #[arg(long, value_name = "DURATION", value_parser = parse_validity)]
        valid_for: Option<std::time::Duration>,
        /// Bind the token to this production order (`provisiond order
        /// open`): it creates devices only within the order.
        #[arg(long, value_name = "NAME")]
        order: Option<String>,
    },
    /// List the tokens: name, role, created, expiry, revocation (never the
    /// token itself, which the store does not have).
    List {
        /// The store: sqlite:PATH or dynamodb:TABLE_PREFIX[?endpoint=URL].
        #[arg(long)]
        store: StoreUri,
        /// One JSON object per token, a line each.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: every later request with it is refused (idempotent).
    Revoke {
        /// The store: sqlite:PATH or dynamodb:TABLE_PREFIX[?endpoint=URL].
        #[arg(long)]
        store: StoreUri,
        /// The token's name.
        #[arg(long)]
        name: String,
    },
}

fn parse_validity(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 90d, 12h, 30m)"))?;
    if d.as_secs() == 0 || d.as_secs() > 10 * 366 * 86_400 {
        return Err("from 1 s to 10 years".into());
    }
    Ok(d)
}

#[derive(Debug, Subcommand)]
enum OrderCommand {
    /// Open an order. Audited.
    Open {
        /// The store: sqlite:PATH or dynamodb:TABLE_PREFIX[?endpoint=URL].
        #[arg(long)]
        store: StoreUri,
        /// A unique name for the order.
        #[arg(long)]
        name: String,
        /// The product every device of the order is.
        #[arg(long)]
        product: String,
        /// How many new devices it may create.
        #[arg(long)]
        quantity: u32,
        /// Open from (RFC 3339, e.g. 2027-01-10T00:00:00Z); default now.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        from: Option<i64>,
        /// Open for this long from then (e.g. 30d).
        #[arg(long, value_name = "DURATION", value_parser = parse_validity)]
        valid_for: std::time::Duration,
        /// The chip supplier's list of hardware IDs, one per line; only these
        /// may be created.
        #[arg(long, value_name = "FILE")]
        allow_list: Option<PathBuf>,
    },
    /// List the orders: product, quantity, used, window, list size.
    List {
        /// The store: sqlite:PATH or dynamodb:TABLE_PREFIX[?endpoint=URL].
        #[arg(long)]
        store: StoreUri,
        /// One JSON object per order, a line each.
        #[arg(long)]
        json: bool,
    },
}

fn parse_time(text: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("{e} (e.g. 2027-01-10T00:00:00Z)"))?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| "before 1970".into())
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
    /// entry), and with --checkpoint-key every signed checkpoint in it.
    Verify {
        /// The store: sqlite:PATH or dynamodb:TABLE_PREFIX[?endpoint=URL].
        #[arg(long)]
        store: StoreUri,
        /// The checkpoint key's public half (PEM): checkpoints must verify
        /// with it and match the chain (a recomputed chain does not).
        #[arg(long, value_name = "PEM")]
        checkpoint_key: Option<PathBuf>,
        /// With --checkpoint-key: the newest checkpoint must be at most this
        /// old (e.g. 15m), or the log may have been cut back.
        #[arg(long, value_name = "DURATION", value_parser = parse_validity, requires = "checkpoint_key")]
        max_age: Option<std::time::Duration>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sign the chain's head now and append the checkpoint.
    Checkpoint {
        /// The store: sqlite:PATH or dynamodb:TABLE_PREFIX[?endpoint=URL].
        #[arg(long)]
        store: StoreUri,
        /// The checkpoint key: file:, pkcs11: or awskms: URI.
        #[arg(long, value_name = "URI")]
        key: signer::KeyRef,
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Load the TLS identity first: a bad one stops the server before it
    // opens the store or the port.
    let tls = match args.tls_cert.zip(args.tls_key) {
        Some((cert, key)) => Some(lambda::tls::server_config(&cert, &key)?),
        None => None,
    };
    let listen = args.listen;
    let authorities = authorities_from_files(&args.authority)?;
    if authorities.is_empty() {
        eprintln!("provisiond: warning: no --authority; every activation will be refused");
    }
    let store = args.store.open().await?;
    // The checkpoint key opens (and signs once) before the server starts.
    let checkpoints = match &args.checkpoint_key {
        Some(uri) => {
            let uri = uri.clone();
            let key: Arc<dyn signer::Signer> =
                tokio::task::spawn_blocking(move || signer::open_signer(&uri).map(Arc::from))
                    .await??;
            let first = lambda::checkpoint::make(store.as_ref(), &key, None).await?;
            Some((key, first.map(|made| made.after)))
        }
        None => None,
    };
    let rate = |n: f64| {
        if n > 0.0 {
            Rate::per_second(n)
        } else {
            Rate::OFF
        }
    };
    let guard = Arc::new(DeviceGuard::new(Limits {
        per_source: rate(args.auth_rate_per_source),
        per_serial: rate(args.auth_rate_per_serial),
        ..Limits::default()
    }));
    let app = router(AppState {
        auth: Arc::new(BearerTokens::new(Arc::clone(&store))),
        store: Arc::clone(&store),
        authorities: Arc::new(authorities),
        guard: Arc::clone(&guard),
    })
    .into_make_service_with_connect_info::<lambda::api::PeerAddr>();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr()?;
    let checkpointer = checkpoints.as_ref().map(|(key, first)| {
        let (store, key, every) = (Arc::clone(&store), Arc::clone(key), args.checkpoint_every);
        let mut last = first.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match lambda::checkpoint::make(store.as_ref(), &key, last.as_deref()).await {
                    Ok(Some(made)) => last = Some(made.after),
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "audit checkpoint failed"),
                }
            }
        })
    });
    match tls {
        Some(config) => {
            let listener = lambda::tls::TlsListener::new(listener, config)?;
            eprintln!("provisiond listening on https://{local}");
            axum::serve(listener, app)
                .with_graceful_shutdown(stop_signal())
                .await?;
        }
        None => {
            eprintln!("provisiond listening on http://{local}");
            axum::serve(listener, app)
                .with_graceful_shutdown(stop_signal())
                .await?;
        }
    }
    // Refusals counted since the last summary go to the log before exit,
    // and a last checkpoint covers everything.
    if let Some(counts) = guard.take_refusals() {
        store
            .audit(&lambda::audit::AuditEntry {
                actor: "anonymous".into(),
                action: "auth.refused".into(),
                subject: counts,
                outcome: "counted".into(),
            })
            .await?;
    }
    if let Some(task) = checkpointer {
        task.abort();
    }
    if let Some((key, _)) = &checkpoints {
        lambda::checkpoint::make(store.as_ref(), key, None).await?;
    }
    eprintln!("provisiond stopped");
    Ok(())
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn order_open(
    store: &StoreUri,
    name: &str,
    product: &str,
    quantity: u32,
    window: (Option<i64>, std::time::Duration),
    allow_list: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    check_token_name(name).map_err(|why| anyhow::anyhow!("--{why}"))?;
    if product.is_empty()
        || product.len() > 16
        || !product.bytes().all(|b| (0x20..=0x7e).contains(&b))
    {
        anyhow::bail!("--product: 1 to 16 printable ASCII characters");
    }
    let allow = match allow_list {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--allow-list {}: {e}", path.display()))?;
            Some(
                lambda::model::parse_allow_list(&text)
                    .map_err(|e| anyhow::anyhow!("--allow-list {}: {e}", path.display()))?,
            )
        }
    };
    let now = lambda::unix_now();
    let not_before = window.0.unwrap_or(now);
    let order = lambda::model::Order {
        name: name.to_owned(),
        product: product.to_owned(),
        quantity,
        used: 0,
        not_before,
        not_after: not_before + window.1.as_secs() as i64,
        allow,
        created_at: now,
    };
    let o = store
        .open_with(false)
        .wait()?
        .open_order(&order, "operator")
        .wait()?;
    eprintln!(
        "provisiond: order {:?} open: {} x {} from {} until {}{}",
        o.name,
        o.quantity,
        o.product,
        utc(o.not_before),
        utc(o.not_after),
        o.allow
            .as_ref()
            .map(|a| format!(", {} hardware IDs allowed", a.len()))
            .unwrap_or_default()
    );
    Ok(())
}

fn order_list(store: &StoreUri, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for o in store.open_with(false).wait()?.orders().wait()? {
        if json {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({
                    "name": o.name, "product": o.product, "quantity": o.quantity,
                    "used": o.used, "not_before": o.not_before, "not_after": o.not_after,
                    "allow_list": o.allow.as_ref().map(std::collections::BTreeSet::len),
                }),
            )?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{:<24} {:<16} {:>6}/{:<6} {} .. {}{}",
                o.name,
                o.product,
                o.used,
                o.quantity,
                utc(o.not_before),
                utc(o.not_after),
                o.allow
                    .as_ref()
                    .map(|a| format!("  list of {}", a.len()))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(())
}

fn token_add(
    store: &StoreUri,
    name: &str,
    role: RoleArg,
    valid_for: Option<std::time::Duration>,
    order: Option<&str>,
) -> anyhow::Result<()> {
    check_token_name(name).map_err(|why| anyhow::anyhow!("--{why}"))?;
    let role = match role {
        RoleArg::Factory => Role::Factory,
        RoleArg::Admin => Role::Admin,
    };
    let store = store.open_with(false).wait()?;
    let token = new_token();
    let expires_at = valid_for.map(|d| lambda::unix_now() + d.as_secs() as i64);
    let info = store
        .add_token_for(
            name,
            role,
            &token_hash(&token),
            expires_at,
            order,
            "operator",
        )
        .wait()?;
    eprintln!(
        "provisiond: token {name:?} ({}) created{}; it is shown only this once:",
        role.as_str(),
        info.expires_at
            .map(|t| format!(", valid until {}", utc(t)))
            .unwrap_or_default()
    );
    println!("{token}");
    Ok(())
}

/// Unix seconds as RFC 3339 UTC.
fn utc(t: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64),
    )
    .to_string()
}

fn token_list(store: &StoreUri, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let tokens = store.open_with(false).wait()?.tokens().wait()?;
    let now = lambda::unix_now();
    let mut out = std::io::stdout().lock();
    for t in &tokens {
        let state = match t.usable_at(now) {
            Ok(_) => "usable",
            Err("token_revoked") => "revoked",
            Err(_) => "expired",
        };
        if json {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({
                    "name": t.name, "role": t.role.as_str(), "created_at": t.created_at,
                    "expires_at": t.expires_at, "revoked_at": t.revoked_at, "state": state,
                    "order": t.order,
                }),
            )?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{:<24} {:<8} {:<8} created {}  expires {}",
                t.name,
                t.role.as_str(),
                state,
                utc(t.created_at),
                t.expires_at.map_or_else(|| "never".to_owned(), utc)
            )?;
        }
    }
    if tokens.is_empty() && !json {
        eprintln!("provisiond: no tokens (provisiond token add makes one)");
    }
    Ok(())
}

fn token_revoke(store: &StoreUri, name: &str) -> anyhow::Result<()> {
    let info = store
        .open_with(false)
        .wait()?
        .revoke_token(name, "operator")
        .wait()?;
    eprintln!(
        "provisiond: token {:?} ({}) revoked; requests with it are refused",
        info.name,
        info.role.as_str()
    );
    Ok(())
}

fn audit_verify(
    store: &StoreUri,
    checkpoint_key: Option<&std::path::Path>,
    max_age: Option<std::time::Duration>,
    json: bool,
) -> anyhow::Result<bool> {
    let log = store.open_with(false).wait()?.audit_log().wait()?;
    if let Some(path) = checkpoint_key {
        let key = lambda::config::authorities_from_files(&[path.to_path_buf()])?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("{}: no public key", path.display()))?;
        let max_age = max_age.map(|d| (d.as_secs() as i64, lambda::unix_now()));
        return Ok(match lambda::checkpoint::verify(&log, &key, max_age) {
            Ok(r) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"valid": true, "entries": r.entries,
                            "chains": r.chains,
                            "checkpoints": r.checkpoints, "unanchored": r.unanchored,
                            "newest_checkpoint": r.newest.map(|(covers, time)| serde_json::json!({"covers": covers, "time": time})),
                            "heads": heads_json(&log)})
                    );
                } else {
                    println!(
                        "audit log intact: {} entries in {} chain(s), {} checkpoints verified{}",
                        r.entries,
                        r.chains,
                        r.checkpoints,
                        match r.newest {
                            Some((covers, _)) => format!(
                                "; the newest covers {covers} entries, {} not yet covered",
                                r.unanchored
                            ),
                            None => String::new(),
                        }
                    );
                }
                true
            }
            Err(e) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"valid": false, "problem": e.to_string()})
                    );
                } else {
                    println!("audit log BROKEN: {e}");
                }
                false
            }
        });
    }
    let heads = heads_json(&log);
    match verify_chains(log) {
        Ok(chains) => {
            let count: u64 = chains.iter().map(|h| h.seq).sum();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "entries": count, "chains": chains.len(), "heads": heads})
                );
            } else {
                println!(
                    "audit log intact: {count} entries in {} chain(s)",
                    chains.len()
                );
            }
            Ok(true)
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"valid": false, "chain": e.chain, "first_bad_entry": e.seq, "problem": e.problem})
                );
            } else {
                println!(
                    "{}",
                    e.to_string()
                        .replace("audit log broken", "audit log BROKEN")
                );
            }
            Ok(false)
        }
    }
}

/// The newest entry of each chain, as `{"chain", "seq", "hash"}` (the log
/// as stored, before any check).
fn heads_json(log: &[lambda::audit::ChainedEntry]) -> serde_json::Value {
    let mut heads = std::collections::BTreeMap::new();
    for e in log {
        heads.insert(e.chain, (e.seq, e.hash));
    }
    heads
        .into_iter()
        .map(|(chain, (seq, hash))| serde_json::json!({"chain": chain, "seq": seq, "hash": hex::encode(hash)}))
        .collect()
}

fn audit_show(store: &StoreUri, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut log = store.open_with(false).wait()?.audit_log().wait()?;
    // Chains interleave in time: several are shown by time, each chain's
    // entries in their order (the sort is stable); one as stored.
    if log.iter().any(|e| e.chain != 0) {
        log.sort_by_key(|e| e.time);
    }
    let mut out = std::io::stdout().lock();
    for e in log {
        let (time, place) = (
            e.time,
            if e.chain == 0 {
                e.seq.to_string()
            } else {
                format!("{}:{}", e.chain, e.seq)
            },
        );
        if json {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({
                    "chain": e.chain, "seq": e.seq, "time": e.time, "actor": e.entry.actor,
                    "action": e.entry.action, "subject": e.entry.subject,
                    "outcome": e.entry.outcome, "hash": hex::encode(e.hash),
                }),
            )?;
            writeln!(out)?;
        } else {
            // Stored text is escaped already; entries from before that was
            // done are escaped here, so no entry can drive the terminal.
            let e = e.entry.escaped_for_display();
            writeln!(
                out,
                "{:>6}  {}  {:<24} {:<12} {:<16} {}",
                place, time, e.actor, e.action, e.outcome, e.subject
            )?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(serve(args)))
        }
        Command::Token(TokenCommand::Add {
            store,
            name,
            role,
            valid_for,
            order,
        }) => token_add(&store, &name, role, valid_for, order.as_deref()),
        Command::Order(OrderCommand::Open {
            store,
            name,
            product,
            quantity,
            from,
            valid_for,
            allow_list,
        }) => order_open(
            &store,
            &name,
            &product,
            quantity,
            (from, valid_for),
            allow_list.as_deref(),
        ),
        Command::Order(OrderCommand::List { store, json }) => order_list(&store, json),
        Command::Token(TokenCommand::List { store, json }) => token_list(&store, json),
        Command::Token(TokenCommand::Revoke { store, name }) => token_revoke(&store, &name),
        Command::Audit(AuditCommand::Verify {
            store,
            checkpoint_key,
            max_age,
            json,
        }) => match audit_verify(&store, checkpoint_key.as_deref(), max_age, json) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Audit(AuditCommand::Checkpoint { store, key }) => (|| {
            let store = store.open_with(false).wait()?;
            let signer: Arc<dyn signer::Signer> = Arc::from(signer::open_signer(&key)?);
            match lambda::checkpoint::make(store.as_ref(), &signer, None).wait()? {
                Some(made) => eprintln!(
                    "provisiond: checkpoint of {} chain(s), {} entries, appended",
                    made.covered.len(),
                    made.covered.iter().map(|h| h.seq).sum::<u64>()
                ),
                None => eprintln!("provisiond: the log is empty; nothing to checkpoint"),
            }
            Ok(())
        })(),
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
