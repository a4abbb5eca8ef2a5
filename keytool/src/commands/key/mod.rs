//! `keytool key …`

mod generate;
mod getpub;

use clap::Subcommand;

use crate::failure::CmdResult;

/// Key commands.
#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Generate a new ECDSA P-256 key.
    Generate(generate::Args),
    /// Print a public key (C array, Rust slice, PEM or raw DER), as imgtool getpub.
    Getpub(getpub::Args),
    /// Print the SHA-256 of a public key (MCUboot's KEYHASH), as imgtool getpubhash.
    Getpubhash(getpub::HashArgs),
}

impl KeyCommand {
    pub(crate) fn run(self) -> CmdResult {
        match self {
            KeyCommand::Generate(a) => a.run(),
            KeyCommand::Getpub(a) => a.run(),
            KeyCommand::Getpubhash(a) => a.run(),
        }
    }
}
