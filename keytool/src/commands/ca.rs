//! `keytool ca init-root | init-intermediate` and `keytool device cert`:
//! X.509 certificates signed inside the HSM or KMS (docs/certificates.md).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use firmware::record::HwId;
use signer::certs::{self, DeviceIdentity};
use signer::keys::quorum::Officer;
use signer::keys::Signer;
use signer::public_key::load_public_key;
use signer::KeyRef;

use crate::commands::util::key_ref;
use crate::failure::{CmdResult, Failure};
use crate::station::session::Context;

/// Issue under the policy (`crate::station::certs::issue`).
fn issue(
    policy: Option<&Path>,
    keys: &[(&KeyRef, &dyn Signer)],
    subjects: Vec<String>,
    output: &Path,
    make: impl FnOnce() -> Result<String, certs::CertError>,
) -> CmdResult {
    Ok(crate::station::certs::issue(
        policy, keys, subjects, output, make,
    )?)
}

/// CA commands.
#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// A self-signed root CA certificate for a key in the HSM or KMS.
    InitRoot(RootArgs),
    /// A device CA certificate, signed by the root.
    InitIntermediate(IntermediateArgs),
}

impl CaCommand {
    pub(crate) fn run(self, ctx: &Context) -> CmdResult {
        match self {
            CaCommand::InitRoot(a) => a.run(ctx),
            CaCommand::InitIntermediate(a) => a.run(ctx),
        }
    }
}

/// Device commands.
#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// A device's client certificate, from its CSR or its public key.
    Cert(Box<DeviceCertArgs>),
}

impl DeviceCommand {
    pub(crate) fn run(self, ctx: &Context) -> CmdResult {
        match self {
            DeviceCommand::Cert(a) => a.run(ctx),
        }
    }
}

fn subject(s: &str) -> Result<rcgen::DistinguishedName, String> {
    certs::parse_subject(s).map_err(|e| e.to_string())
}

fn hw_id(s: &str) -> Result<HwId, String> {
    HwId::parse_hex(s).ok_or_else(|| format!("{s:?}: 16 hex digits, e.g. 1234567800000003"))
}

fn read_text(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::usage_msg(format!("cannot read {}: {e}", path.display())))
}

fn open(key: &KeyRef, unlock: &[Officer]) -> Result<Box<dyn Signer>, Failure> {
    Ok(crate::station::keys::open_key(key, unlock)?)
}

/// `keytool ca init-root`.
#[derive(Debug, clap::Args)]
pub(crate) struct RootArgs {
    /// For a key in a quorum-unlocked token: an officer who unlocks it with
    /// their share, NAME=pkcs11:token=… (repeat for M officers).
    #[arg(long = "unlock", value_name = "NAME=URI", value_parser = crate::commands::util::officer)]
    unlock: Vec<Officer>,
    /// The root CA's key.
    #[arg(short, long, value_name = "URI", value_parser = key_ref)]
    key: KeyRef,
    /// The subject, e.g. "CN=Acme Fleet Root CA,O=Acme,C=SE".
    #[arg(long, value_parser = subject)]
    subject: rcgen::DistinguishedName,
    /// Validity in days.
    #[arg(long, default_value_t = 7300)]
    days: u32,
    /// The certificate (PEM).
    #[arg(short, long)]
    output: PathBuf,
}

impl RootArgs {
    fn run(self, ctx: &Context) -> CmdResult {
        let key = open(&self.key, &self.unlock)?;
        let subjects = vec!["kind:root".to_owned(), format!("days:{}", self.days)];
        issue(
            ctx.policy.as_deref(),
            &[(&self.key, key.as_ref())],
            subjects,
            &self.output,
            || certs::root_ca(key.as_ref(), self.subject.clone(), self.days),
        )
    }
}

/// `keytool ca init-intermediate`.
#[derive(Debug, clap::Args)]
pub(crate) struct IntermediateArgs {
    /// For a key in a quorum-unlocked token: an officer who unlocks it with
    /// their share, NAME=pkcs11:token=… (repeat for M officers).
    #[arg(long = "unlock", value_name = "NAME=URI", value_parser = crate::commands::util::officer)]
    unlock: Vec<Officer>,
    /// The device CA's own key.
    #[arg(short, long, value_name = "URI", value_parser = key_ref)]
    key: KeyRef,
    /// The root CA's key, which signs.
    #[arg(long, value_name = "URI", value_parser = key_ref)]
    issuer_key: KeyRef,
    /// The root CA's certificate (PEM).
    #[arg(long, value_name = "ROOT.pem")]
    issuer_cert: PathBuf,
    /// The subject, e.g. "CN=Acme Device CA,O=Acme,C=SE".
    #[arg(long, value_parser = subject)]
    subject: rcgen::DistinguishedName,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    days: u32,
    /// The certificate (PEM).
    #[arg(short, long)]
    output: PathBuf,
}

impl IntermediateArgs {
    fn run(self, ctx: &Context) -> CmdResult {
        let key = open(&self.key, &self.unlock)?;
        let issuer_key = open(&self.issuer_key, &self.unlock)?;
        let issuer_cert = read_text(&self.issuer_cert)?;
        let subjects = vec![
            "kind:intermediate".to_owned(),
            format!("days:{}", self.days),
        ];
        issue(
            ctx.policy.as_deref(),
            &[
                (&self.key, key.as_ref()),
                (&self.issuer_key, issuer_key.as_ref()),
            ],
            subjects,
            &self.output,
            || {
                certs::intermediate_ca(
                    key.as_ref(),
                    issuer_key.as_ref(),
                    &issuer_cert,
                    self.subject.clone(),
                    self.days,
                )
            },
        )
    }
}

/// `keytool device cert`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["csr", "pubkey"])))]
pub(crate) struct DeviceCertArgs {
    /// For a key in a quorum-unlocked token: an officer who unlocks it with
    /// their share, NAME=pkcs11:token=… (repeat for M officers).
    #[arg(long = "unlock", value_name = "NAME=URI", value_parser = crate::commands::util::officer)]
    unlock: Vec<Officer>,
    /// The device CA's key.
    #[arg(long, value_name = "URI", value_parser = key_ref)]
    issuer_key: KeyRef,
    /// The device CA's certificate (PEM).
    #[arg(long, value_name = "CA.pem")]
    issuer_cert: PathBuf,
    /// The device's certificate request (PEM): CN = serial, subjectAltName
    /// URI urn:dev:hwid:HEX; its signature is checked first.
    #[arg(long, value_name = "CSR.pem")]
    csr: Option<PathBuf>,
    /// The device's public key (PEM), with --serial and --hw-id.
    #[arg(long, value_name = "PUB.pem", value_parser = key_ref, requires_all = ["serial", "hw_id"])]
    pubkey: Option<KeyRef>,
    /// The device's serial (the subject CN). With --csr, must match it.
    #[arg(long)]
    serial: Option<u32>,
    /// The chip's hardware ID. With --csr, must match it.
    #[arg(long, value_parser = hw_id)]
    hw_id: Option<HwId>,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    days: u32,
    /// The certificate (PEM).
    #[arg(short, long)]
    output: PathBuf,
}

impl DeviceCertArgs {
    fn identity(&self) -> Result<DeviceIdentity, Failure> {
        if let Some(csr) = &self.csr {
            let id = certs::check_csr(&read_text(csr)?).map_err(Failure::failed)?;
            if self.serial.is_some_and(|s| s != id.serial) {
                return Err(Failure::failed(anyhow::anyhow!(
                    "the CSR is for serial {}, not --serial {}",
                    id.serial,
                    self.serial.unwrap_or_default()
                )));
            }
            if self.hw_id.is_some_and(|h| h != id.hw_id) {
                return Err(Failure::failed(anyhow::anyhow!(
                    "the CSR is for hw_id {}, not --hw-id",
                    id.hw_id
                )));
            }
            return Ok(id);
        }
        let (Some(key), Some(serial), Some(hw_id)) = (&self.pubkey, self.serial, self.hw_id) else {
            return Err(Failure::usage_msg("--pubkey needs --serial and --hw-id"));
        };
        Ok(DeviceIdentity {
            public_key: load_public_key(key).map_err(Failure::usage)?,
            serial,
            hw_id,
        })
    }

    fn run(self, ctx: &Context) -> CmdResult {
        let device = self.identity()?;
        let issuer_key = open(&self.issuer_key, &self.unlock)?;
        let issuer_cert = read_text(&self.issuer_cert)?;
        let subjects = vec![
            "kind:device".to_owned(),
            format!("serial:{}", device.serial),
            format!("hw_id:{}", device.hw_id),
            format!(
                "device_key:sha256:{}",
                hex::encode(device.public_key.key_id())
            ),
        ];
        issue(
            ctx.policy.as_deref(),
            &[(&self.issuer_key, issuer_key.as_ref())],
            subjects,
            &self.output,
            || certs::device_cert(issuer_key.as_ref(), &issuer_cert, &device, self.days),
        )
    }
}
