//! `keytool ceremony …`: quorum-unlocked tokens (`docs/quorum.md`).

use std::path::PathBuf;

use clap::Subcommand;
use secrecy::SecretString;
use signer::key_ref::{PinSource, Pkcs11Uri, TokenSelector};
use signer::keys::quorum::{self, Officer, QuorumConfig};

use crate::commands::util::{officer, print_json};
use crate::failure::{CmdResult, Failure};
use crate::station::session::Context;

/// Ceremony commands.
#[derive(Debug, Subcommand)]
pub(crate) enum CeremonyCommand {
    /// Make a token quorum-unlocked: its user and SO PINs become random
    /// values nobody sees, split M of N among the officers' own tokens.
    Init(InitArgs),
    /// Re-split under the old quorum: a new officer set and threshold.
    Rotate(RotateArgs),
    /// Show a token's quorum (read without logging in).
    Status(StatusArgs),
}

impl CeremonyCommand {
    pub(crate) fn run(self, ctx: &Context) -> CmdResult {
        match self {
            CeremonyCommand::Init(a) => a.run(ctx),
            CeremonyCommand::Rotate(a) => a.run(ctx),
            CeremonyCommand::Status(a) => a.run(),
        }
    }
}

/// The signing token.
#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The signing token's label.
    #[arg(long, value_name = "LABEL")]
    token: String,
    /// The PKCS#11 module (default: $PKCS11_MODULE).
    #[arg(long, value_name = "PATH")]
    module_path: Option<PathBuf>,
}

impl TokenArgs {
    fn uri(&self, pin: Option<PinSource>) -> Pkcs11Uri {
        Pkcs11Uri {
            token: TokenSelector::Label(self.token.clone()),
            object: None,
            id: None,
            module_path: self.module_path.clone(),
            pin,
        }
    }
}

/// `keytool ceremony init`.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// Shares needed to use the token (M).
    #[arg(long, value_name = "M")]
    threshold: u8,
    /// An officer and their own token, NAME=pkcs11:token=…; repeat for each
    /// of the N officers. The officer logs in to it (pin-source in the URI, or
    /// a prompt).
    #[arg(long = "officer", value_name = "NAME=URI", value_parser = officer, required = true)]
    officers: Vec<Officer>,
    /// A file holding the token's current user PIN (default: $PKCS11_PIN, or
    /// a prompt).
    #[arg(long, value_name = "FILE")]
    pin_source: Option<PathBuf>,
    /// A file holding the token's current SO PIN (default: $PKCS11_SO_PIN, or
    /// a prompt).
    #[arg(long, value_name = "FILE")]
    so_pin_source: Option<PathBuf>,
    /// Print the quorum as JSON.
    #[arg(long)]
    json: bool,
}

/// Read a PIN from a file (first line), an environment variable, or the
/// terminal.
fn read_pin(file: Option<&PathBuf>, env: &str, what: &str) -> Result<SecretString, Failure> {
    if let Some(p) = file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(p)
                .map_err(|e| Failure::usage_msg(format!("{what}: {}: {e}", p.display())))?,
        );
        return Ok(SecretString::from(
            text.lines().next().unwrap_or_default().to_owned(),
        ));
    }
    if let Ok(v) = std::env::var(env) {
        return Ok(SecretString::from(v));
    }
    rpassword::prompt_password(format!("{what}: "))
        .map(SecretString::from)
        .map_err(|e| {
            Failure::usage_msg(format!(
                "{what}: no source given and no terminal ({e}); set {env} or pass a file"
            ))
        })
}

fn show(cfg: &QuorumConfig, token: &str, json: bool) -> CmdResult {
    if json {
        return print_json(cfg);
    }
    println!(
        "token {token}: quorum-unlocked, {} of {} officers",
        cfg.threshold,
        cfg.officers.len()
    );
    for o in &cfg.officers {
        println!("  {:<16} token {}", o.name, o.token);
    }
    Ok(())
}

impl InitArgs {
    fn run(self, ctx: &Context) -> CmdResult {
        let user = read_pin(self.pin_source.as_ref(), "PKCS11_PIN", "current user PIN")?;
        let so = read_pin(
            self.so_pin_source.as_ref(),
            "PKCS11_SO_PIN",
            "current SO PIN",
        )?;
        let uri = self.token.uri(None);
        let label = &self.token.token;
        let cfg = crate::station::ceremony::init(
            ctx.policy.as_deref(),
            &uri,
            label,
            (&user, &so),
            self.threshold,
            &self.officers,
        )?;
        show(&cfg, label, self.json)
    }
}

/// `keytool ceremony rotate`.
#[derive(Debug, clap::Args)]
pub(crate) struct RotateArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// An officer of the current quorum who unlocks it, NAME=URI; at least
    /// its threshold of them.
    #[arg(long = "unlock", value_name = "NAME=URI", value_parser = officer, required = true)]
    unlock: Vec<Officer>,
    /// The new threshold.
    #[arg(long, value_name = "M")]
    threshold: u8,
    /// An officer of the new quorum, NAME=URI (repeat for each).
    #[arg(long = "officer", value_name = "NAME=URI", value_parser = officer, required = true)]
    officers: Vec<Officer>,
    /// Print the new quorum as JSON.
    #[arg(long)]
    json: bool,
}

impl RotateArgs {
    fn run(self, ctx: &Context) -> CmdResult {
        let uri = self.token.uri(None);
        let label = &self.token.token;
        let cfg = crate::station::ceremony::rotate(
            ctx.policy.as_deref(),
            &uri,
            label,
            &self.unlock,
            self.threshold,
            &self.officers,
        )?;
        show(&cfg, label, self.json)
    }
}

/// `keytool ceremony status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// JSON.
    #[arg(long)]
    json: bool,
}

impl StatusArgs {
    fn run(self) -> CmdResult {
        let uri = self.token.uri(None);
        match quorum::config(&uri).map_err(Failure::failed)? {
            Some(cfg) => show(&cfg, &self.token.token, self.json),
            None => {
                if self.json {
                    println!("null");
                } else {
                    println!(
                        "token {}: not quorum-unlocked (a PIN opens it)",
                        self.token.token
                    );
                }
                Ok(())
            }
        }
    }
}
