//! `keytool release request | approve | check | sign`: releases under the
//! policy with M-of-N officer approval (docs/policy.md).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use policies::evaluate::Evaluation;
use signer::image::PublicKeyFormat;
use signer::KeyRef;

use crate::commands::util::{key_ref, print_json};
use crate::failure::{CmdResult, Failure};
use crate::station::release::{
    approve_release, evaluate_release, read_request, request_release, sign_release,
};
use crate::station::session::Context;

/// Release commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ReleaseCommand {
    /// Write a release request for an unsigned image: digest, product,
    /// version, security counter, release key and expiry.
    Request(RequestArgs),
    /// Add an officer's approval (a signature over the request) to REQ.
    Approve(ApproveArgs),
    /// Evaluate the policy for a release without signing anything.
    Check(CheckArgs),
    /// Sign the image if, and only if, the policy passes.
    Sign(SignArgs),
}

impl ReleaseCommand {
    pub(crate) fn run(self, ctx: &Context) -> CmdResult {
        match self {
            ReleaseCommand::Request(a) => a.run(ctx),
            ReleaseCommand::Approve(a) => a.run(ctx),
            ReleaseCommand::Check(a) => a.run(ctx),
            ReleaseCommand::Sign(a) => a.run(ctx),
        }
    }
}

/// Seconds in `90s`, `30m`, `72h`, `7d`.
fn duration(s: &str) -> Result<i64, String> {
    policies::policy::parse_duration(s).ok_or_else(|| {
        format!("{s:?}: a number and a unit (s, m, h or d), between 1s and 366d, e.g. 72h")
    })
}

/// `keytool release request`.
#[derive(Debug, clap::Args)]
pub(crate) struct RequestArgs {
    /// The unsigned MCUboot image (`keytool image sign` without a key), .bin or .hex.
    image: PathBuf,
    /// The product, as the policy names it.
    #[arg(long)]
    product: String,
    /// The release key meant to sign, by its policy name (default: the
    /// product's only release key). Give two (old generation, then new) for
    /// an image both key tables accept (docs/key-rotation.md).
    #[arg(long, value_name = "NAME", action = clap::ArgAction::Append)]
    release_key: Vec<String>,
    /// How long the approvals may be collected and used: a number with s, m,
    /// h or d.
    #[arg(long, value_name = "DURATION", default_value = "72h", value_parser = duration)]
    valid_for: i64,
    /// The request file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Print the request as JSON.
    #[arg(long)]
    json: bool,
}

impl RequestArgs {
    fn run(self, ctx: &Context) -> CmdResult {
        let policy = ctx.require_policy("release request")?;
        let (file, quorum) = request_release(
            policy,
            &self.image,
            &self.product,
            &self.release_key,
            self.valid_for,
            &self.output,
        )?;
        if self.json {
            return print_json(&file);
        }
        eprintln!(
            "release request for {} {} (sha256:{}) written to {}; it needs {quorum} approval(s) (keytool release approve)",
            file.request.product,
            file.request.version,
            file.request.image_digest,
            self.output.display(),
        );
        Ok(())
    }
}

/// `keytool release approve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApproveArgs {
    /// The request file; the approval is added to it.
    request: PathBuf,
    /// The officer's approval key (pkcs11: token, or a file in development).
    #[arg(long, value_name = "URI", value_parser = key_ref)]
    officer_key: KeyRef,
    /// Approve without being asked (scripts): the request is still shown.
    #[arg(long)]
    yes: bool,
    /// Print the approval as JSON.
    #[arg(long)]
    json: bool,
}

/// Show the officer what they are about to approve, and ask on a terminal.
/// Returns the digest of what was shown.
fn show_and_confirm(path: &Path, yes: bool) -> Result<[u8; 32], Failure> {
    use std::io::IsTerminal;
    let file = read_request(path)?;
    let r = &file.request;
    eprintln!(
        "release request {}:
  product   {}
  version   {}
  counter   {}
  image     sha256:{} ({} bytes)
  key       {} ({})
  expires   {} (unix)
  approvals {}",
        path.display(),
        r.product,
        r.version,
        r.security_counter.map_or("none".into(), |c| c.to_string()),
        r.image_digest,
        r.image_size,
        r.release_key,
        r.release_key_fingerprint,
        r.expires,
        file.approvals.len()
    );
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage_msg(
                "no terminal to confirm on: read the request above and pass --yes",
            ));
        }
        eprint!("approve this release? [y/N] ");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(Failure::failed)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Failure::usage_msg("not approved"));
        }
    }
    Ok(r.approval_digest())
}

impl ApproveArgs {
    fn run(self, ctx: &Context) -> CmdResult {
        let policy = ctx.require_policy("release approve")?;
        let shown = show_and_confirm(&self.request, self.yes)?;
        let (officer, approval, file) =
            approve_release(policy, &self.request, &self.officer_key, Some(shown))?;
        if self.json {
            return print_json(&approval);
        }
        eprintln!(
            "{officer} approved {} {} (sha256:{}); {} approval(s) on the request",
            file.request.product,
            file.request.version,
            file.request.image_digest,
            file.approvals.len()
        );
        Ok(())
    }
}

/// What `check` and `sign` share.
#[derive(Debug, clap::Args)]
pub(crate) struct ReleaseArgs {
    /// The request file, with its approvals.
    request: PathBuf,
    /// The unsigned image the request names.
    #[arg(long)]
    image: PathBuf,
    /// The release key to sign with; twice (in the request's order) for an
    /// image signed by two key generations.
    #[arg(short, long, value_name = "URI", value_parser = key_ref, required = true, action = clap::ArgAction::Append)]
    key: Vec<KeyRef>,
    /// For a key in a quorum-unlocked token: an officer who unlocks it with
    /// their share, NAME=pkcs11:token=… (repeat for M officers; each logs in
    /// to their own token).
    #[arg(long = "unlock", value_name = "NAME=URI", value_parser = crate::commands::util::officer)]
    unlock: Vec<signer::keys::quorum::Officer>,
    /// Print the evaluation (and the result) as JSON.
    #[arg(long)]
    json: bool,
}

/// `keytool release check`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    release: ReleaseArgs,
}

/// `keytool release sign`.
#[derive(Debug, clap::Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    release: ReleaseArgs,
    /// The signed image to write (.bin, or .hex for a .hex input).
    #[arg(short, long)]
    output: PathBuf,
    /// Put the key's hash (KEYHASH) or the whole key (PUBKEY) in the image.
    #[arg(long, value_enum, default_value = "hash")]
    public_key_format: KeyFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyFormat {
    Hash,
    Full,
}

fn print_evaluation(e: &Evaluation) {
    let mut err = std::io::stderr().lock();
    for r in &e.rules {
        let _ = writeln!(
            err,
            "  {}  {:<22} {}",
            if r.passed { "PASS" } else { "FAIL" },
            r.rule,
            r.detail
        );
    }
}

impl CheckArgs {
    fn run(self, ctx: &Context) -> CmdResult {
        let r = &self.release;
        let eval = evaluate_release(
            ctx.require_policy("release check")?,
            &r.request,
            &r.image,
            &r.key,
            &r.unlock,
        )?;
        if r.json {
            print_json(&eval)?;
        } else {
            print_evaluation(&eval);
        }
        if eval.passed() {
            Ok(())
        } else {
            Err(Failure::failed(anyhow::anyhow!(
                "the policy would refuse this release:\n  {}",
                eval.failures().join("\n  ")
            )))
        }
    }
}

#[derive(serde::Serialize)]
struct SignSummary<'a> {
    signed: bool,
    output: Option<String>,
    audit_seq: Option<u64>,
    evaluation: &'a Evaluation,
}

impl SignArgs {
    fn run(self, ctx: &Context) -> CmdResult {
        let r = &self.release;
        let format = match self.public_key_format {
            KeyFormat::Hash => PublicKeyFormat::Hash,
            KeyFormat::Full => PublicKeyFormat::Full,
        };
        let policy = ctx.require_policy("release sign")?;
        let outcome = sign_release(
            policy,
            &r.request,
            &r.image,
            (&r.key, &r.unlock),
            &self.output,
            format,
        );
        if let Some(eval) = &outcome.evaluation {
            if r.json {
                print_json(&SignSummary {
                    signed: outcome.result.is_ok(),
                    output: outcome
                        .result
                        .is_ok()
                        .then(|| self.output.display().to_string()),
                    audit_seq: outcome.result.as_ref().ok().map(|s| s.seq),
                    evaluation: eval,
                })?;
            } else {
                print_evaluation(eval);
            }
        }
        let signed = outcome.result?;
        if !r.json {
            eprintln!(
                "signed {} {} for {} with {} (approved by {}); audit line {}",
                signed.product,
                signed.version,
                self.output.display(),
                signed.release_key,
                signed.approvers.join(", "),
                signed.seq
            );
        }
        Ok(())
    }
}
