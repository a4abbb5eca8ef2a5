//! `keytool key list`

use signer::keys::{kms, pkcs11, KeyType};
use signer::public_key::image_key_id;
use signer::KeyRef;

use crate::commands::util::{key_ref, print_json};
use crate::failure::{CmdResult, Failure};

/// List the keys in a token with their URIs and public-key fingerprints (the
/// SHA-256 of the DER public key: MCUboot's KEYHASH and this product's key id).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The token (pkcs11:token=…) or KMS account and region (awskms:///any?region=…).
    #[arg(short, long, value_parser = key_ref)]
    key: KeyRef,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Entry {
    uri: String,
    label: Option<String>,
    id: Option<String>,
    key_type: Option<&'static str>,
    key_id: Option<String>,
}

impl Args {
    pub(crate) fn run(self) -> CmdResult {
        let entries: Vec<Entry> = match &self.key {
            KeyRef::Pkcs11(uri) => pkcs11::list(uri)
                .map_err(Failure::failed)?
                .into_iter()
                .map(|k| Entry {
                    label: k.uri.object.clone(),
                    id: k.uri.id.as_ref().map(hex::encode),
                    key_type: k.public.as_ref().map(|p| KeyType::of(p).name()),
                    key_id: k.public.map(|p| hex::encode(image_key_id(&p))),
                    uri: k.uri.to_string(),
                })
                .collect(),
            KeyRef::AwsKms(r) => kms::list(r)
                .map_err(Failure::failed)?
                .into_iter()
                .map(|k| Entry {
                    label: Some(k.reference.key_id.clone()),
                    id: None,
                    key_type: k.public.as_ref().map(|p| KeyType::of(p).name()),
                    key_id: k.public.map(|p| hex::encode(image_key_id(&p))),
                    uri: k.reference.to_string(),
                })
                .collect(),
            other => {
                return Err(Failure::usage_msg(format!(
                    "cannot list keys of {other}: give a pkcs11: token or an awskms: reference"
                )))
            }
        };
        if self.json {
            return print_json(&entries);
        }
        for e in &entries {
            println!(
                "{}  {:<10}  {}",
                e.key_id.as_deref().unwrap_or("(no public key)"),
                e.key_type.unwrap_or("-"),
                e.uri
            );
        }
        if entries.is_empty() {
            println!("no keys");
        }
        Ok(())
    }
}
