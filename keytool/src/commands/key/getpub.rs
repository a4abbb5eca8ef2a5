//! `keytool key getpub` and `getpubhash`: output identical to imgtool's.

use std::path::PathBuf;

use clap::ValueEnum;
use signer::public_key::{
    encode_public, encode_public_hash, load_image_key, HashEncoding, PubEncoding,
};
use signer::KeyRef;

use crate::commands::util::{emit, key_ref};
use crate::failure::{CmdResult, Failure};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Encoding {
    /// C array of the DER SubjectPublicKeyInfo.
    LangC,
    /// Rust slice of the DER SubjectPublicKeyInfo.
    LangRust,
    /// PEM.
    Pem,
    /// Raw DER.
    Raw,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum HashEnc {
    /// C array.
    LangC,
    /// Raw 32 bytes.
    Raw,
}

fn check_suffix(suffix: &str) -> Result<(), Failure> {
    if suffix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        Ok(())
    } else {
        Err(Failure::usage_msg(format!(
            "--name-suffix {suffix:?} must contain only [A-Za-z0-9_]"
        )))
    }
}

/// Print the public key of KEY.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The key: file:PATH or a path (private or public PEM: ECDSA P-256 or
    /// P-384, Ed25519), pkcs11:… or awskms:…
    #[arg(short, long, value_parser = key_ref)]
    key: KeyRef,
    /// Output encoding (default lang-c).
    #[arg(short, long, value_enum)]
    encoding: Option<Encoding>,
    /// Deprecated imgtool spelling of --encoding: c or rust.
    #[arg(short = 'l', long, hide = true, value_parser = ["c", "rust"])]
    lang: Option<String>,
    /// Append SUFFIX to the C/Rust identifiers.
    #[arg(long, default_value = "")]
    name_suffix: String,
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

impl Args {
    pub(crate) fn run(self) -> CmdResult {
        check_suffix(&self.name_suffix)?;
        let chosen = match (self.encoding, self.lang.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(Failure::usage_msg(
                    "use only one of --encoding/-e and --lang/-l",
                ))
            }
            (Some(e), None) => e,
            (None, Some("rust")) => Encoding::LangRust,
            (None, _) => Encoding::LangC,
        };
        let encoding = match chosen {
            Encoding::LangC => PubEncoding::LangC,
            Encoding::LangRust => PubEncoding::LangRust,
            Encoding::Pem => PubEncoding::Pem,
            Encoding::Raw => PubEncoding::Raw,
        };
        if !self.name_suffix.is_empty() && matches!(encoding, PubEncoding::Pem | PubEncoding::Raw) {
            return Err(Failure::usage_msg(
                "--name-suffix is only meaningful for lang-c / lang-rust encodings",
            ));
        }
        let out = match load_image_key(&self.key) {
            Ok(key) => encode_public(&key, encoding, &self.name_suffix),
            // An X25519 image encryption key (a file), as imgtool prints it.
            Err(e) => match signer::image::encrypt::load_enc_public_key(&self.key) {
                Ok(signer::image::encrypt::EncPublicKey::X25519(k)) => {
                    let der = signer::image::encrypt::EncPublicKey::X25519(k).spki_der();
                    signer::public_key::encode_public_der(
                        "x25519",
                        &der,
                        &der,
                        encoding,
                        &self.name_suffix,
                    )
                }
                _ => return Err(Failure::usage(e)),
            },
        };
        emit(self.output.as_deref(), &out)
    }
}

/// Print the SHA-256 of KEY's DER public key (MCUboot's KEYHASH).
#[derive(Debug, clap::Args)]
pub(crate) struct HashArgs {
    /// The key: file:PATH or a path (private or public PEM: ECDSA P-256 or
    /// P-384, Ed25519), pkcs11:… or awskms:…
    #[arg(short, long, value_parser = key_ref)]
    key: KeyRef,
    /// Output encoding.
    #[arg(short, long, value_enum, default_value = "lang-c")]
    encoding: HashEnc,
    /// Append SUFFIX to the C identifiers.
    #[arg(long, default_value = "")]
    name_suffix: String,
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

impl HashArgs {
    pub(crate) fn run(self) -> CmdResult {
        check_suffix(&self.name_suffix)?;
        let encoding = match self.encoding {
            HashEnc::LangC => HashEncoding::LangC,
            HashEnc::Raw => HashEncoding::Raw,
        };
        if !self.name_suffix.is_empty() && encoding == HashEncoding::Raw {
            return Err(Failure::usage_msg(
                "--name-suffix is only meaningful for the lang-c encoding",
            ));
        }
        let key = load_image_key(&self.key).map_err(Failure::usage)?;
        emit(
            self.output.as_deref(),
            &encode_public_hash(&key, encoding, &self.name_suffix),
        )
    }
}
