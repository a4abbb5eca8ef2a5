//! `keytool image …`

pub(crate) mod dumpinfo;
pub(crate) mod sign;
pub(crate) mod verify;
pub(crate) mod wrap;

use clap::Subcommand;

use crate::failure::CmdResult;

/// Image commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Build and sign an MCUboot image (imgtool sign's flags and output).
    Sign(Box<sign::Args>),
    /// Verify an image: structure, hash, key, signature, TLV allow-list, trailer.
    Verify(verify::Args),
    /// Show the whole structure of an image.
    Dumpinfo(dumpinfo::Args),
    /// Copies of a signed, encrypted image for other devices' encryption
    /// keys (only the ENC TLV differs; one signature serves them all).
    Wrap(wrap::Args),
}

impl ImageCommand {
    pub(crate) fn run(self, ctx: &crate::station::session::Context) -> CmdResult {
        match self {
            ImageCommand::Sign(a) => a.run(ctx),
            ImageCommand::Verify(a) => a.run(),
            ImageCommand::Dumpinfo(a) => a.run(),
            ImageCommand::Wrap(a) => a.run(ctx),
        }
    }
}
