//! One module per command group; each subcommand is an `Args` struct with a
//! `run` method.

mod audit;
pub(crate) mod image;
pub(crate) mod key;
mod record;
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
    /// The station's audit log: show, verify.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

impl Command {
    pub(crate) fn run(self) -> CmdResult {
        match self {
            Command::Image(c) => c.run(),
            Command::Key(c) => c.run(),
            Command::Record(c) => c.run(),
            Command::Audit(c) => c.run(),
        }
    }
}
