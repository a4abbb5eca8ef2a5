//! One module per command group; each subcommand is an `Args` struct with a
//! `run` method.

pub(crate) mod image;
pub(crate) mod key;
pub(crate) mod util;

use clap::Subcommand;

use crate::failure::CmdResult;

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// MCUboot images: sign, verify, dumpinfo (imgtool-compatible flags).
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Keys: generate, getpub, getpubhash.
    #[command(subcommand)]
    Key(key::KeyCommand),
}

impl Command {
    pub(crate) fn run(self) -> CmdResult {
        match self {
            Command::Image(c) => c.run(),
            Command::Key(c) => c.run(),
        }
    }
}
