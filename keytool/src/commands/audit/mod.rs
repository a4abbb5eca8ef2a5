//! `keytool audit …`: the station's audit log (docs/audit-log.md).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::Subcommand;
use policies::audit::{verify, Entry};
use signer::public_key::load_public_key;
use signer::KeyRef;

use crate::commands::util::key_ref;
use crate::failure::{CmdResult, Failure};

/// Audit-log commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Start the policy's audit log (a production station never starts one
    /// by itself), and anchor it in a quorum token.
    Init(InitArgs),
    /// Print the log, one event per line.
    Show(ShowArgs),
    /// Check the whole chain and the signed head; exit 1 naming the first bad
    /// line.
    Verify(VerifyArgs),
}

impl AuditCommand {
    pub(crate) fn run(self, ctx: &crate::station::session::Context) -> CmdResult {
        match self {
            AuditCommand::Init(a) => a.run(ctx),
            AuditCommand::Show(a) => a.run(),
            AuditCommand::Verify(a) => a.run(),
        }
    }
}

/// `keytool audit init`.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// A quorum-unlocked token (its label) to anchor the new log in: from
    /// then on, signing with its keys checks the log against the anchor.
    #[arg(long, value_name = "LABEL", requires = "unlock")]
    anchor_token: Option<String>,
    /// An officer of that token's quorum, NAME=URI (at least its threshold).
    #[arg(long = "unlock", value_name = "NAME=URI", value_parser = crate::commands::util::officer)]
    unlock: Vec<signer::keys::quorum::Officer>,
}

impl InitArgs {
    fn run(self, ctx: &crate::station::session::Context) -> CmdResult {
        let policy_path = ctx.require_policy("audit init")?;
        let token = match &self.anchor_token {
            Some(label) => {
                let uri = signer::key_ref::Pkcs11Uri {
                    token: signer::key_ref::TokenSelector::Label(label.clone()),
                    object: None,
                    id: None,
                    module_path: None,
                    pin: None,
                };
                Some(signer::keys::quorum::unlock(&uri, &self.unlock).map_err(Failure::failed)?)
            }
            None => None,
        };
        let mut session = crate::station::session::Session::create(policy_path)?;
        let mut subjects = vec![format!("policy:{}", session.policy.name)];
        if let Some(label) = &self.anchor_token {
            subjects.push(format!("anchor:{label}"));
            subjects.extend(
                self.unlock
                    .iter()
                    .map(|o| format!("unlocked-by:{}", o.name)),
            );
        }
        session.record("audit.init", subjects, "ok")?;
        match &token {
            Some(t) => session.anchor(t)?,
            None => session.seal()?,
        }
        session.close()?;
        eprintln!(
            "keytool: audit log {} started{}",
            session_log(policy_path)?,
            if token.is_some() { " and anchored" } else { "" }
        );
        Ok(())
    }
}

fn session_log(policy_path: &std::path::Path) -> Result<String, Failure> {
    let policy = policies::policy::Policy::load(policy_path).map_err(Failure::usage)?;
    Ok(policy.audit_log.display().to_string())
}

/// The log file.
#[derive(Debug, clap::Args)]
pub(crate) struct LogArg {
    /// The audit log (its signed head is LOG.head).
    #[arg(long, default_value = "audit.jsonl")]
    log: PathBuf,
}

/// `keytool audit show`.
#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    log: LogArg,
    /// The lines as they are stored (JSON), instead of a table.
    #[arg(long)]
    json: bool,
}

impl ShowArgs {
    fn run(self) -> CmdResult {
        let path = &self.log.log;
        let file = std::fs::File::open(path)
            .map_err(|e| Failure::usage_msg(format!("{}: {e}", path.display())))?;
        let mut out = std::io::stdout().lock();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(Failure::failed)?;
            if self.json {
                writeln!(out, "{line}").map_err(Failure::failed)?;
                continue;
            }
            match serde_json::from_str::<Entry>(&line) {
                Ok(e) => writeln!(
                    out,
                    "{:>6}  {}  {:<16} {:<16} {:<10} {}",
                    e.seq,
                    e.time,
                    e.actor,
                    e.action,
                    e.outcome,
                    e.subjects.join(" ")
                ),
                Err(_) => writeln!(out, "{:>6}  (not a log entry)", n + 1),
            }
            .map_err(Failure::failed)?;
        }
        Ok(())
    }
}

/// `keytool audit verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    log: LogArg,
    /// The station key that signs checkpoints (any key URI or a public-key
    /// PEM); without it the chain is checked but not the signatures.
    #[arg(short = 'k', long, value_parser = key_ref)]
    station_key: Option<KeyRef>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl VerifyArgs {
    fn run(self) -> CmdResult {
        let key = self
            .station_key
            .as_ref()
            .map(load_public_key)
            .transpose()
            .map_err(Failure::usage)?;
        match verify(&self.log.log, key.as_ref()) {
            Ok(v) => {
                if self.json {
                    println!(
                        "{}",
                        serde_json::json!({"valid": true, "entries": v.entries,
                            "checkpoints": v.checkpoints, "unsealed": v.unsealed, "head": v.head})
                    );
                } else {
                    println!(
                        "audit log intact: {} entries, {} checkpoints{}",
                        v.entries,
                        v.checkpoints,
                        if v.unsealed > 0 {
                            format!(
                                ", {} after the last checkpoint (session not closed)",
                                v.unsealed
                            )
                        } else {
                            String::new()
                        }
                    );
                }
                Ok(())
            }
            Err(e) => {
                if self.json {
                    println!(
                        "{}",
                        serde_json::json!({"valid": false, "first_bad_line": e.line, "problem": e.problem})
                    );
                }
                Err(Failure::failed(e))
            }
        }
    }
}
