//! One module per command group; each subcommand is an `Args` struct with a
//! `run` method.

mod audit;
mod ca;
mod ceremony;
pub(crate) mod image;
pub(crate) mod key;
mod policy;
mod record;
pub(crate) mod release;
pub(crate) mod util;

use clap::Subcommand;

use crate::failure::CmdResult;

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// MCUboot images: sign, verify, dumpinfo (imgtool-compatible flags).
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Keys: generate, list, getpub, getpubhash.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Provisioning records: sign, verify, dump.
    #[command(subcommand)]
    Record(record::RecordCommand),
    /// Releases under the policy: request, approve (M of N officers), check, sign.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// Release policies: check.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The station's audit log: show, verify.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Quorum-unlocked tokens: init, rotate, status (M of N officers hold the
    /// PIN in shares; nobody knows it).
    #[command(subcommand)]
    Ceremony(ceremony::CeremonyCommand),
    /// X.509 certificate authorities: init-root, init-intermediate.
    #[command(subcommand)]
    Ca(Box<ca::CaCommand>),
    /// Devices: cert (an X.509 client certificate for a device).
    #[command(subcommand)]
    Device(ca::DeviceCommand),
    /// The officer's station in the terminal: keys, releases with
    /// approvals, provisioning batches, the audit log.
    Tui(crate::tui::Args),
}

impl Command {
    pub(crate) fn run(self, ctx: &crate::station::session::Context) -> CmdResult {
        match self {
            Command::Image(c) => c.run(ctx),
            Command::Key(c) => c.run(),
            Command::Record(c) => c.run(ctx),
            Command::Release(c) => c.run(ctx),
            Command::Policy(c) => c.run(),
            Command::Audit(c) => c.run(ctx),
            Command::Ceremony(c) => c.run(ctx),
            Command::Ca(c) => c.run(ctx),
            Command::Device(c) => c.run(ctx),
            Command::Tui(a) => a.run(ctx),
        }
    }
}
