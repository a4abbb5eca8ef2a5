//! `keytool key generate`

use clap::ValueEnum;
use signer::KeyRef;

use crate::commands::util::{key_ref, print_json};
use crate::failure::{CmdResult, Failure};
use crate::station::keys::generate;

/// Key types.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KeyType {
    /// ECDSA over NIST P-256 with SHA-256 (MCUboot's ECDSA256_SHA256).
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA over NIST P-384 with SHA-384 (file keys only, for now; images
    /// are verified with it, not yet signed).
    #[value(name = "ecdsa-p384")]
    EcdsaP384,
    /// Ed25519 (file keys only, for now; images are verified with it, not
    /// yet signed).
    #[value(name = "ed25519")]
    Ed25519,
}

/// Generate a key. In AWS KMS (`awskms:///alias/NAME`) it is an
/// ECC_NIST_P256 SIGN_VERIFY key behind that alias. In a PKCS#11 token (`pkcs11:token=…;object=LABEL`) the key
/// is created inside the token, private, sensitive and never extractable, for
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
    key_type: KeyType,
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
        let other = match self.key_type {
            KeyType::EcdsaP256 => None,
            KeyType::EcdsaP384 => Some((signer::keys::FileKeyType::EcdsaP384, "ecdsa-p384")),
            KeyType::Ed25519 => Some((signer::keys::FileKeyType::Ed25519, "ed25519")),
        };
        if let Some((kind, name)) = other {
            return self.generate_other(kind, name);
        }
        let (public, key) = generate(&self.key, self.force)?;
        let out = Generated {
            key: key.to_string(),
            key_type: "ecdsa-p256",
            key_id: hex::encode(public.key_id()),
            fingerprint: policies::policy::fingerprint(&public),
        };
        if self.json {
            return print_json(&out);
        }
        println!(
            "generated ECDSA P-256 key {} (key id {})",
            out.key, out.key_id
        );
        Ok(())
    }

    /// An ECDSA P-384 or Ed25519 development key file.
    fn generate_other(&self, kind: signer::keys::FileKeyType, name: &'static str) -> CmdResult {
        let KeyRef::File(path) = &self.key else {
            return Err(Failure::usage_msg(format!(
                "{name} keys can be generated as files only, for now (PKCS#11 and KMS keys are ECDSA P-256)"
            )));
        };
        if path.exists() && !self.force {
            return Err(Failure::usage_msg(format!(
                "{} already exists; refusing to replace a key (use --force)",
                path.display()
            )));
        }
        let public = signer::keys::generate_file_image_key(path, kind).map_err(Failure::failed)?;
        let key_id = hex::encode(signer::public_key::image_key_id(&public));
        let out = Generated {
            key: self.key.to_string(),
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
