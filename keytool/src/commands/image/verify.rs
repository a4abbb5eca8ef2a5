//! `keytool image verify`: more than `imgtool verify` checks.

use std::path::PathBuf;

use firmware::image::Image;
use firmware::image::Tail;
use signer::image::describe;
use signer::public_key::{image_key_id, load_image_key};
use signer::KeyRef;

use crate::commands::util::{based_u32, key_ref, print_json, read_image};
use crate::failure::{CmdResult, Failure};

/// Verify an image: header and TLV structure, the image hash, that KEYHASH or
/// PUBKEY names one of the given keys and its signature verifies, that the
/// unprotected TLVs are only those MCUboot allows there, and that anything
/// after the TLVs is erased padding with a well-formed trailer.
///
/// Exit status: 0 valid, 1 invalid, 2 usage error.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Public (or private) key the image must be signed by: ECDSA P-256 (any
    /// key reference), and as PEM files ECDSA P-384 and Ed25519 too.
    /// Repeatable: any one of them will do. Without a key only the hash and
    /// structure are checked.
    #[arg(short, long, value_parser = key_ref)]
    key: Vec<KeyRef>,
    /// For an encrypted image: the private key its AES key is wrapped for
    /// (PEM, ECIES-P256 or X25519). The payload is decrypted in memory and
    /// then verified; without it an encrypted image's hash cannot be checked.
    #[arg(long, value_name = "FILE", value_parser = key_ref)]
    enc_key: Option<KeyRef>,
    /// Refuse images whose security counter is below this.
    #[arg(long, value_parser = based_u32)]
    min_security_counter: Option<u32>,
    /// Print the result as JSON on stdout (also on failure).
    #[arg(long)]
    json: bool,
    /// The image (.bin or .hex).
    image: PathBuf,
}

#[derive(serde::Serialize)]
pub(crate) struct Report {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_counter: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signed_by: Option<SignedBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tail: Option<Tail>,
    /// How the payload is encrypted, for an encrypted image.
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption: Option<signer::image::encrypt::EncInfo>,
}

#[derive(serde::Serialize)]
struct SignedBy {
    key: String,
    key_type: &'static str,
    key_id: String,
}

fn describe_tail(t: &Tail) -> String {
    match t {
        Tail::None => "none".into(),
        Tail::Erased { len, erased_val } => {
            format!("{len:#x} erased bytes ({erased_val:#04x})")
        }
        Tail::Trailer {
            len,
            max_align,
            confirmed,
            ..
        } => format!(
            "padded {len:#x} bytes, boot magic for max-align {max_align}, image_ok {}",
            if *confirmed {
                "set (confirmed)"
            } else {
                "unset"
            }
        ),
    }
}

impl Args {
    pub(crate) fn check(&self) -> Result<Report, Failure> {
        let keys = self
            .key
            .iter()
            .map(load_image_key)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::usage)?;
        let mut bytes = read_image(&self.image)?;
        let fail = |e: firmware::image::ImageError| {
            Failure::failed(anyhow::anyhow!("{}: {e}", self.image.display()))
        };
        let encryption = {
            let image = Image::parse(&bytes).map_err(fail)?;
            signer::image::encrypt::enc_info(&image).map_err(Failure::failed)?
        };
        match (&encryption, &self.enc_key) {
            (Some(_), Some(k)) => {
                let key =
                    signer::image::encrypt::load_enc_private_key(k).map_err(Failure::usage)?;
                signer::image::encrypt::decrypt_in_place(&mut bytes, &key).map_err(|e| {
                    Failure::failed(anyhow::anyhow!("{}: {e}", self.image.display()))
                })?;
            }
            (None, Some(_)) => {
                return Err(Failure::usage_msg(format!(
                    "{}: not an encrypted image (--enc-key)",
                    self.image.display()
                )))
            }
            (Some(e), None) => {
                return Err(Failure::failed(anyhow::anyhow!(
                    "{}: encrypted (AES-{}, {:?}): its hash covers the plaintext; give the \
                     key it is wrapped for with --enc-key",
                    self.image.display(),
                    e.aes_bits,
                    e.scheme
                )))
            }
            (None, None) => {}
        }
        let image = Image::parse(&bytes).map_err(fail)?;
        let verified = image
            .verify(&keys, self.min_security_counter)
            .map_err(fail)?;
        let info = describe(&image).map_err(fail)?;
        Ok(Report {
            valid: true,
            error: None,
            version: Some(verified.version.to_string()),
            security_counter: verified.security_counter,
            digest: Some(hex::encode(verified.digest)),
            signed_by: verified.signed_by.map(|i| SignedBy {
                key: self.key[i].to_string(),
                key_type: signer::keys::KeyType::of(&keys[i]).name(),
                key_id: hex::encode(image_key_id(&keys[i])),
            }),
            tail: Some(info.tail),
            encryption,
        })
    }

    pub(crate) fn run(self) -> CmdResult {
        let report = match self.check() {
            Ok(r) => r,
            Err(f) => {
                if self.json {
                    print_json(&Report {
                        valid: false,
                        error: Some(format!("{:#}", f.error)),
                        version: None,
                        security_counter: None,
                        digest: None,
                        signed_by: None,
                        tail: None,
                        encryption: None,
                    })?;
                }
                return Err(f);
            }
        };
        if self.json {
            return print_json(&report);
        }
        println!("Image was correctly validated");
        println!("Image version: {}", report.version.unwrap_or_default());
        println!("Image digest: {}", report.digest.unwrap_or_default());
        match report.security_counter {
            Some(c) => println!("Security counter: {c} ({c:#010x})"),
            None => println!("Security counter: none"),
        }
        match report.signed_by {
            Some(s) => println!("Signature: verified with {} (key id {})", s.key, s.key_id),
            None => println!("Signature: not checked (no -k/--key given)"),
        }
        if let Some(t) = &report.tail {
            println!("Trailer: {}", describe_tail(t));
        }
        if let Some(e) = &report.encryption {
            println!(
                "Encryption: AES-{} payload, key wrapped with {:?} (decrypted with --enc-key)",
                e.aes_bits, e.scheme
            );
        }
        Ok(())
    }
}
