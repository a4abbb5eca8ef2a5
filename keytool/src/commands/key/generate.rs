//! `keytool key generate`

use clap::ValueEnum;
use signer::keys::KeyType;
use signer::public_key::image_key_id;
use signer::KeyRef;

use crate::commands::util::{key_ref, print_json};
use crate::failure::{CmdResult, Failure};
use crate::station::keys::generate;

/// Key types (imgtool's names but for `-t`'s spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum KeyTypeArg {
    /// RSA-2048, RSASSA-PSS with SHA-256.
    #[value(name = "rsa-2048")]
    Rsa2048,
    /// RSA-3072, RSASSA-PSS with SHA-256.
    #[value(name = "rsa-3072")]
    Rsa3072,
    /// ECDSA over NIST P-256 with SHA-256 (MCUboot's ECDSA256_SHA256).
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA over NIST P-384 with SHA-384.
    #[value(name = "ecdsa-p384")]
    EcdsaP384,
    /// Ed25519 (over the image's SHA-256 or SHA-512, or the image itself).
    #[value(name = "ed25519")]
    Ed25519,
    /// X25519, an image encryption key (`-E`; file keys only).
    #[value(name = "x25519")]
    X25519,
    /// P-256 key agreement, an image encryption key (`-E`, `image wrap
    /// --enc-key`): in a PKCS#11 token or KMS it may derive (ECDH) and never
    /// sign.
    #[value(name = "ecdh-p256")]
    EcdhP256,
}

impl KeyTypeArg {
    /// The signing key type, or `None` for an encryption key.
    fn signing(self) -> Option<KeyType> {
        Some(match self {
            Self::Rsa2048 => KeyType::Rsa2048,
            Self::Rsa3072 => KeyType::Rsa3072,
            Self::EcdsaP256 => KeyType::EcdsaP256,
            Self::EcdsaP384 => KeyType::EcdsaP384,
            Self::Ed25519 => KeyType::Ed25519,
            Self::X25519 | Self::EcdhP256 => return None,
        })
    }
}

/// Generate a key. In AWS KMS (`awskms:///alias/NAME`) it is a SIGN_VERIFY
/// key (ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_EDWARDS25519, RSA_2048,
/// RSA_3072) behind that alias. In a PKCS#11 token
/// (`pkcs11:token=…;object=LABEL`) the key is created inside the token, private, sensitive and never extractable, for
/// signing only; an existing label or id is never overwritten. For a file it
/// is written as unencrypted PKCS#8 PEM (development only), readable by its
/// owner only.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to create the key: pkcs11:token=…;object=LABEL, awskms:///alias/NAME,
    /// a path or file:PATH.
    #[arg(short, long, value_parser = key_ref)]
    key: KeyRef,
    /// Key type.
    #[arg(short = 't', long = "type", value_enum)]
    key_type: KeyTypeArg,
    /// Replace an existing key file.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// imgtool's passphrase prompt: refused (use an HSM instead).
    #[arg(short = 'p', long, hide = true)]
    password: bool,
}

#[derive(serde::Serialize)]
struct Generated {
    key: String,
    key_type: &'static str,
    key_id: String,
    /// The key ID as a policy file writes it.
    fingerprint: String,
}

impl Args {
    pub(crate) fn run(self) -> CmdResult {
        if self.password {
            return Err(Failure::usage_msg(
                "passphrase-protected key files are not supported; keep the key in an HSM",
            ));
        }
        let Some(kind) = self.key_type.signing() else {
            return self.generate_encryption_key();
        };
        let (public, key) = generate(&self.key, kind, self.force)?;
        let key_id = hex::encode(image_key_id(&public));
        let out = Generated {
            key: key.to_string(),
            key_type: kind.name(),
            fingerprint: format!("sha256:{key_id}"),
            key_id,
        };
        if self.json {
            return print_json(&out);
        }
        println!(
            "generated {} key {} (key id {})",
            kind.title(),
            out.key,
            out.key_id
        );
        Ok(())
    }

    /// An image encryption key: X25519 as a file (imgtool keygen's form),
    /// P-256 key agreement as a file or in a PKCS#11 token.
    fn generate_encryption_key(&self) -> CmdResult {
        use signer::image::encrypt::EncPublicKey;
        let (public, key, name): (EncPublicKey, KeyRef, &'static str) =
            match (&self.key, self.key_type) {
                (KeyRef::Pkcs11(uri), KeyTypeArg::EcdhP256) => {
                    if self.force {
                        return Err(Failure::usage_msg(
                        "--force does not apply to HSM keys: keys in a token are never replaced",
                    ));
                    }
                    let (public, named) =
                        signer::keys::pkcs11::generate_ecdh(uri).map_err(Failure::failed)?;
                    (
                        EncPublicKey::P256(public),
                        KeyRef::Pkcs11(named),
                        "ecdh-p256",
                    )
                }
                (KeyRef::AwsKms(r), KeyTypeArg::EcdhP256) => {
                    if self.force {
                        return Err(Failure::usage_msg(
                            "--force does not apply to KMS keys: keys in KMS are never replaced",
                        ));
                    }
                    let (public, _arn) =
                        signer::keys::kms::generate_key_agreement(r).map_err(Failure::failed)?;
                    (EncPublicKey::P256(public), self.key.clone(), "ecdh-p256")
                }
                (KeyRef::File(path), kind) => {
                    if path.exists() && !self.force {
                        return Err(Failure::usage_msg(format!(
                            "{} already exists; refusing to replace a key (use --force)",
                            path.display()
                        )));
                    }
                    if kind == KeyTypeArg::X25519 {
                        let public = signer::image::encrypt::generate_x25519_file(path)
                            .map_err(Failure::failed)?;
                        (public, self.key.clone(), "x25519")
                    } else {
                        let public =
                            signer::keys::generate_file_key(path).map_err(Failure::failed)?;
                        (EncPublicKey::P256(public), self.key.clone(), "ecdh-p256")
                    }
                }
                _ => {
                    return Err(Failure::usage_msg(
                        "image encryption keys are files (x25519, ecdh-p256) or PKCS#11 or \
                         KMS key-agreement keys (ecdh-p256); a device's key is born on the device",
                    ))
                }
            };
        let key_id = hex::encode(public.key_id());
        let out = Generated {
            key: key.to_string(),
            key_type: name,
            fingerprint: format!("sha256:{key_id}"),
            key_id,
        };
        if self.json {
            return print_json(&out);
        }
        println!("generated {name} key {} (key id {})", out.key, out.key_id);
        Ok(())
    }
}
