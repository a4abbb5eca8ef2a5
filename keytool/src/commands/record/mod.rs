//! `keytool record …`: provisioning records (docs/provisioning-record.md).

use std::path::PathBuf;

use clap::Subcommand;
use firmware::record::{HwId, ProvisioningRecord, RecordBody, RecordError};
use firmware::P256PublicKey;
use signer::public_key::load_public_key;
use signer::record::{sign_record, RecordRequest};
use signer::{open_signer, KeyRef};

use crate::commands::util::{key_ref, print_json};
use crate::failure::{CmdResult, Failure};

/// Record commands.
#[derive(Debug, Subcommand)]
pub(crate) enum RecordCommand {
    /// Sign a provisioning record with a provisioning-authority key.
    Sign(Box<SignArgs>),
    /// Verify a record: structure, authority, signature, and optionally the chip.
    Verify(VerifyArgs),
    /// Print a record's fields.
    Dump(DumpArgs),
}

impl RecordCommand {
    pub(crate) fn run(self, ctx: &crate::commands::station::Context) -> CmdResult {
        match self {
            RecordCommand::Sign(a) => a.run(ctx),
            RecordCommand::Verify(a) => a.run(),
            RecordCommand::Dump(a) => a.run(),
        }
    }
}

fn hw_id(s: &str) -> Result<HwId, String> {
    HwId::parse_hex(s)
        .ok_or_else(|| format!("{s:?} is not a hardware ID: 16 hex digits, e.g. 1234567800000003"))
}

/// Sign a record binding HW-ID, serial, product and device key.
#[derive(Debug, clap::Args)]
pub(crate) struct SignArgs {
    /// The provisioning-authority key (any key reference).
    #[arg(short, long, value_parser = key_ref)]
    key: KeyRef,
    /// The chip's hardware ID, 16 hex digits (DEVICEID[1] then DEVICEID[0]).
    #[arg(long, value_parser = hw_id)]
    hw_id: HwId,
    /// The device's serial number.
    #[arg(long)]
    serial: u32,
    /// The device's public key (PEM, or any key reference).
    #[arg(long, value_parser = key_ref)]
    device_pubkey: KeyRef,
    /// Product name (ASCII, at most 16 characters).
    #[arg(long, default_value = "")]
    product: String,
    /// Issue time in Unix seconds (default: now).
    #[arg(long)]
    issued_at: Option<u64>,
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct RecordView {
    hw_id: String,
    serial: u32,
    product: String,
    device_pubkey: String,
    device_key_id: String,
    issued_at: u64,
    authority_key_id: String,
    signature: String,
}

fn view(r: &ProvisioningRecord) -> RecordView {
    let b = &r.body;
    RecordView {
        hw_id: b.hw_id.to_string(),
        serial: b.serial,
        product: b.product_name().unwrap_or("<non-ASCII>").to_owned(),
        device_pubkey: hex::encode(b.device_pubkey.sec1()),
        device_key_id: hex::encode(b.device_pubkey.key_id()),
        issued_at: b.issued_at,
        authority_key_id: hex::encode(b.authority_key_id),
        signature: hex::encode(r.signature),
    }
}

impl SignArgs {
    fn run(self, ctx: &crate::commands::station::Context) -> CmdResult {
        let product = RecordBody::product_field(&self.product).ok_or_else(|| {
            Failure::usage_msg(format!(
                "--product {:?}: ASCII, at most 16 characters",
                self.product
            ))
        })?;
        let device_pubkey = load_public_key(&self.device_pubkey).map_err(Failure::usage)?;
        let issued_at = match self.issued_at {
            Some(t) => t,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(Failure::failed)?
                .as_secs(),
        };
        let authority = open_signer(&self.key).map_err(Failure::usage)?;
        let req = RecordRequest {
            hw_id: self.hw_id,
            serial: self.serial,
            product,
            device_pubkey,
            issued_at,
        };
        // Under a policy: an authority key only, and the signature audited.
        let mut session = match &ctx.policy {
            Some(path) => Some(crate::commands::station::Session::open(path)?),
            None => None,
        };
        let mut subjects = vec![
            format!("hw_id:{}", self.hw_id),
            format!("serial:{}", self.serial),
            format!("product:{}", self.product),
            format!("device_key:sha256:{}", hex::encode(device_pubkey.key_id())),
        ];
        if let Some(s) = session.take() {
            let public = authority.public_key().map_err(Failure::failed)?;
            match s
                .policy
                .check_key(policies::policy::Role::Authority, &self.key, &public)
            {
                Ok(name) => {
                    subjects.push(format!("key:{name}"));
                    session = Some(s);
                }
                Err(why) => return Err(s.refuse("record.sign", subjects, &why)),
            }
        }
        let bytes = sign_record(&req, authority.as_ref()).map_err(Failure::failed)?;
        match session {
            Some(mut s) => {
                s.write_recorded(&self.output, &bytes, "record.sign", subjects)?;
                s.close()?;
            }
            None => signer::atomic::write(&self.output, &bytes).map_err(Failure::failed)?,
        }
        if self.json {
            let record = ProvisioningRecord::parse(&bytes).map_err(Failure::failed)?;
            return print_json(&view(&record));
        }
        Ok(())
    }
}

fn read_record(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot read {}: {e}", path.display())))
}

fn invalid(path: &std::path::Path, e: RecordError) -> Failure {
    Failure::failed(anyhow::anyhow!("{}: invalid record: {e}", path.display()))
}

/// Verify a record. Exit status 0 valid, 1 invalid (with the reason), 2 usage.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// A provisioning-authority public key. Repeatable: any of them may have signed.
    #[arg(short, long, required = true, value_parser = key_ref)]
    authority: Vec<KeyRef>,
    /// Require the record to be for this chip.
    #[arg(long, value_parser = hw_id)]
    hw_id: Option<HwId>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// The record file.
    record: PathBuf,
}

impl VerifyArgs {
    fn run(self) -> CmdResult {
        let authorities: Vec<P256PublicKey> = self
            .authority
            .iter()
            .map(load_public_key)
            .collect::<Result<_, _>>()
            .map_err(Failure::usage)?;
        let bytes = read_record(&self.record)?;
        let result = ProvisioningRecord::parse(&bytes).and_then(|r| {
            r.verify_signature(&authorities)?;
            match self.hw_id {
                Some(chip) if chip != r.body.hw_id => Err(RecordError::WrongChip {
                    record: r.body.hw_id,
                    chip,
                }),
                _ => Ok(r),
            }
        });
        match result {
            Ok(r) => {
                if self.json {
                    return print_json(&serde_json::json!({"valid": true, "record": view(&r)}));
                }
                println!(
                    "valid: serial {} hw_id {} product {:?}",
                    r.body.serial,
                    r.body.hw_id,
                    r.body.product_name().unwrap_or("")
                );
                Ok(())
            }
            Err(e) => {
                if self.json {
                    print_json(
                        &serde_json::json!({"valid": false, "reason": e.code(), "error": e.to_string()}),
                    )?;
                }
                Err(invalid(&self.record, e))
            }
        }
    }
}

/// Print a record's fields (structure only; nothing is verified).
#[derive(Debug, clap::Args)]
pub(crate) struct DumpArgs {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    /// The record file.
    record: PathBuf,
}

impl DumpArgs {
    fn run(self) -> CmdResult {
        let bytes = read_record(&self.record)?;
        let r = ProvisioningRecord::parse(&bytes).map_err(|e| invalid(&self.record, e))?;
        let v = view(&r);
        if self.json {
            return print_json(&v);
        }
        println!("hw_id:            {}", v.hw_id);
        println!("serial:           {}", v.serial);
        println!("product:          {}", v.product);
        println!("device key:       {}", v.device_pubkey);
        println!("device key id:    {}", v.device_key_id);
        println!("issued at:        {}", v.issued_at);
        println!("authority key id: {}", v.authority_key_id);
        println!("signature:        {}", v.signature);
        Ok(())
    }
}
