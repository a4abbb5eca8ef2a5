//! `keytool image wrap`: one signed, encrypted image, a copy per device.

use std::path::PathBuf;

use signer::image::encrypt::{load_enc_private_key, load_enc_public_key, rewrap, EncPublicKey};
use signer::KeyRef;

use crate::commands::util::{key_ref, print_json, read_image};
use crate::failure::{CmdResult, Failure};

/// Re-wrap an encrypted image's AES key for other devices' encryption keys.
///
/// The image was signed once (`image sign -E STATION.pub …`, the AES key
/// wrapped for the station's encryption key). Each copy differs from it only
/// in the ENC TLV, which wraps the same AES key for one device: the header,
/// the encrypted payload, the protected TLVs, the hash and the signatures are
/// the same bytes, so one signature serves the whole fleet. The AES key is
/// recovered with `--enc-key` (the key the image is wrapped for now), used in
/// memory only and wiped (docs/encryption.md).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The signed, encrypted image.
    #[arg(long)]
    image: PathBuf,
    /// The private key the image's AES key is wrapped for now (the station's
    /// encryption key).
    #[arg(long, value_name = "FILE", value_parser = key_ref)]
    enc_key: KeyRef,
    /// One device's encryption public key (PEM); with -o.
    #[arg(long, value_name = "FILE", value_parser = key_ref, conflicts_with = "registry")]
    device_key: Option<KeyRef>,
    /// The copy for --device-key.
    #[arg(short, long, requires = "device_key")]
    output: Option<PathBuf>,
    /// A registry export: JSON `[{"device": NAME, "enc_public_key": PEM}, …]`
    /// (public keys only); with --out-dir, one copy per device, `NAME.bin`.
    #[arg(long, value_name = "FILE", requires = "out_dir")]
    registry: Option<PathBuf>,
    /// Where the registry's copies go.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Wrapped {
    device: String,
    enc_key_id: String,
    output: String,
}

impl Args {
    /// Under a production policy the AES keys of releases are never
    /// recovered with a key from a file: the station's encryption key must
    /// be a token's (`docs/encryption.md`).
    fn refuse_file_key_in_production(&self, ctx: &crate::station::session::Context) -> CmdResult {
        let Some(path) = &ctx.policy else {
            return Ok(());
        };
        let policy = policies::policy::Policy::load(path).map_err(Failure::usage)?;
        if policy.production && matches!(self.enc_key, KeyRef::File(_)) {
            return Err(Failure::usage_msg(format!(
                "the production policy {:?} refuses a file as the encryption key ({}): whoever \
                 reads the file could decrypt every image made for it; use a pkcs11: \
                 key-agreement key (keytool key generate -t ecdh-p256)",
                policy.name, self.enc_key
            )));
        }
        Ok(())
    }

    pub(crate) fn run(self, ctx: &crate::station::session::Context) -> CmdResult {
        self.refuse_file_key_in_production(ctx)?;
        let bytes = read_image(&self.image)?;
        let from = load_enc_private_key(&self.enc_key).map_err(Failure::usage)?;
        let mut targets: Vec<(String, EncPublicKey, PathBuf)> = Vec::new();
        match (
            &self.device_key,
            &self.output,
            &self.registry,
            &self.out_dir,
        ) {
            (Some(k), Some(out), None, _) => {
                let key = load_enc_public_key(k).map_err(Failure::usage)?;
                targets.push((k.to_string(), key, out.clone()));
            }
            (None, None, Some(reg), Some(dir)) => {
                let text = std::fs::read_to_string(reg).map_err(|e| {
                    Failure::usage_msg(format!("cannot read {}: {e}", reg.display()))
                })?;
                let entries: Vec<firmware::api::EncKeyEntry> = serde_json::from_str(&text)
                    .map_err(|e| {
                        Failure::usage_msg(format!("{}: not a registry export: {e}", reg.display()))
                    })?;
                let mut seen = std::collections::BTreeSet::new();
                for e in entries {
                    if !firmware::api::is_plain_name(&e.device) || !seen.insert(e.device.clone()) {
                        return Err(Failure::usage_msg(format!(
                            "{}: device name {:?} is empty, repeated, or not a plain file name",
                            reg.display(),
                            e.device
                        )));
                    }
                    let key = signer::image::encrypt::enc_public_key_from_pem(
                        &e.device,
                        &e.enc_public_key,
                    )
                    .map_err(Failure::usage)?;
                    targets.push((e.device.clone(), key, dir.join(format!("{}.bin", e.device))));
                }
            }
            _ => {
                return Err(Failure::usage_msg(
                    "give --device-key with -o, or --registry with --out-dir",
                ))
            }
        }
        // Everything is computed before anything is written: a bad key
        // leaves no partial set of copies.
        let mut copies = Vec::with_capacity(targets.len());
        for (device, key, out) in targets {
            let copy = rewrap(&bytes, &from, &key).map_err(|e| {
                let msg = format!("{}: for {device}: {e}", self.image.display());
                if e.is_usage() {
                    Failure::usage_msg(msg)
                } else {
                    Failure::failed(anyhow::anyhow!(msg))
                }
            })?;
            copies.push((device, key, out, copy));
        }
        if let Some(dir) = &self.out_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                Failure::failed(anyhow::anyhow!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut written = Vec::with_capacity(copies.len());
        for (device, key, out, copy) in copies {
            signer::atomic::write(&out, &copy).map_err(Failure::failed)?;
            written.push(Wrapped {
                device,
                enc_key_id: hex::encode(key.key_id()),
                output: out.display().to_string(),
            });
        }
        if self.json {
            return print_json(&written);
        }
        for w in &written {
            eprintln!(
                "wrapped for {} (key id {}): {}",
                w.device, w.enc_key_id, w.output
            );
        }
        Ok(())
    }
}
