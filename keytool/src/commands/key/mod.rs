//! `keytool key …`

pub(crate) mod generate;
pub(crate) mod getpub;
mod list;

use clap::Subcommand;

use crate::failure::CmdResult;

/// Key commands.
#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Generate a new ECDSA P-256 key (in an HSM, or a development file).
    Generate(generate::Args),
    /// List the keys in a token, with URIs and key ids.
    List(list::Args),
    /// Print a public key (C array, Rust slice, PEM or raw DER), as imgtool getpub.
    Getpub(getpub::Args),
    /// Print the SHA-256 of a public key (MCUboot's KEYHASH), as imgtool getpubhash.
    Getpubhash(getpub::HashArgs),
}

impl KeyCommand {
    pub(crate) fn run(self) -> CmdResult {
        match self {
            KeyCommand::Generate(a) => a.run(),
            KeyCommand::List(a) => a.run(),
            KeyCommand::Getpub(a) => a.run(),
            KeyCommand::Getpubhash(a) => a.run(),
        }
    }
}
