//! `keytool policy check`: validate a release policy (docs/policy.md).

use std::path::PathBuf;

use clap::Subcommand;
use policies::policy::{image_fingerprint, Policy, Problem};
use signer::public_key::{image_key_id, load_image_key, load_public_key};

use crate::failure::{CmdResult, Failure};

/// Policy commands.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate a policy file and explain every error.
    Check(CheckArgs),
}

impl PolicyCommand {
    pub(crate) fn run(self) -> CmdResult {
        match self {
            PolicyCommand::Check(a) => a.run(),
        }
    }
}

/// `keytool policy check FILE`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// The policy (TOML).
    file: PathBuf,
    /// Also open every key the policy names (HSM, KMS, files) and check that
    /// its public key has the fingerprint the policy gives.
    #[arg(long)]
    resolve_keys: bool,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl CheckArgs {
    fn run(self) -> CmdResult {
        let (policy, mut problems) = match Policy::load(&self.file) {
            Ok(p) => (Some(p), Vec::new()),
            Err(e) => (None, e.problems),
        };
        if let (Some(p), true) = (&policy, self.resolve_keys) {
            for (name, key) in &p.keys {
                // Release keys may be of any image key type; records,
                // certificates and checkpoints need P-256.
                let loaded = match key.role {
                    policies::policy::Role::Release => load_image_key(&key.uri),
                    _ => load_public_key(&key.uri).map(firmware::image::AnyImageKey::P256),
                };
                match loaded {
                    Ok(pk) if image_key_id(&pk) == key.fingerprint => {}
                    Ok(pk) => problems.push(Problem {
                        at: format!("keys.{name}.fingerprint"),
                        message: format!("the key at {} has {}", key.uri, image_fingerprint(&pk)),
                    }),
                    Err(e) => problems.push(Problem {
                        at: format!("keys.{name}.uri"),
                        message: e.to_string(),
                    }),
                }
            }
            if let Some(station) = &p.station_key {
                if let Err(e) = load_public_key(station) {
                    problems.push(Problem {
                        at: "station_key".into(),
                        message: e.to_string(),
                    });
                }
            }
        }
        if self.json {
            let summary = policy.as_ref().map(|p| {
                serde_json::json!({
                    "name": p.name, "production": p.production,
                    "products": p.products.keys().collect::<Vec<_>>(),
                    "officers": p.officers.keys().collect::<Vec<_>>(),
                    "keys": p.keys.iter().map(|(n, k)| serde_json::json!({
                        "name": n, "role": k.role.to_string(), "uri": k.uri.to_string(),
                        "fingerprint": format!("sha256:{}", hex::encode(k.fingerprint)),
                    })).collect::<Vec<_>>(),
                    "audit_log": p.audit_log.display().to_string(),
                })
            });
            println!(
                "{}",
                serde_json::json!({
                    "valid": problems.is_empty(),
                    "problems": problems.iter().map(|p| serde_json::json!({"at": p.at, "message": p.message})).collect::<Vec<_>>(),
                    "policy": summary,
                })
            );
        } else if problems.is_empty() {
            if let Some(p) = &policy {
                println!(
                    "policy {:?} ({}): valid; {} product(s), {} officer(s), {} key(s){}",
                    p.name,
                    self.file.display(),
                    p.products.len(),
                    p.officers.len(),
                    p.keys.len(),
                    if self.resolve_keys {
                        ", every key found with its fingerprint"
                    } else {
                        ""
                    }
                );
                for (name, prod) in &p.products {
                    println!(
                        "  {name}: {} of {} officers ({} for a rollback or fast-forward), keys {}, slot {:#x}",
                        prod.quorum,
                        prod.officers.len(),
                        prod.rollback_quorum,
                        prod.release_keys.join(", "),
                        prod.slot_size
                    );
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            let list: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.at, p.message))
                .collect();
            Err(Failure::failed(anyhow::anyhow!(
                "policy {}: {} problem{}\n  {}",
                self.file.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                list.join("\n  ")
            )))
        }
    }
}
