//! The provisioning flow for one chip, over any [`Target`]:
//!
//! read `hw_id` from FICR → if the partition already holds a record that
//! verifies for this chip and the backend has it `active`, only verify →
//! `POST /v1/provision` (idempotent) → generate the device key and secret in
//! memory → sign the record with the authority key → write the partition
//! (record and key block) and the firmware → read both back and compare
//! hashes → `POST …/activate` with the record and the secret's hash →
//! optionally lock and confirm → the key and secret are zeroized.
//!
//! Activation is the last backend call, so a failure anywhere before it
//! leaves the device `factory_only`, and the next run recovers: the same
//! serial, and a record already on the chip is activated rather than
//! replaced.

use std::time::Instant;

use firmware::record::{HwId, RECORD_LEN};
use firmware::P256PublicKey;
use serde::Serialize;
use sha2::{Digest, Sha256};
use signer::keys::{Signer, SignerError};
use signer::record::{sign_record, RecordRequest};
use zeroize::Zeroizing;

use crate::backend::{Backend, BackendError};
use crate::chips::Chip;
use crate::partition;
use crate::target::{read_hw_id, Target, TargetError};

/// A firmware image checked before any chip is touched.
#[derive(Debug, Clone)]
pub struct Firmware {
    /// Where it goes (the primary slot).
    pub addr: u32,
    /// The signed image.
    pub bytes: Vec<u8>,
}

/// What to do to each chip.
pub struct Job<'a> {
    /// The chip kind.
    pub chip: &'a Chip,
    /// The backend.
    pub backend: &'a Backend,
    /// The provisioning authority's key.
    pub authority: &'a dyn Signer,
    /// Product name for the record and the registry.
    pub product: Option<String>,
    /// The boot stage to program at the start of flash, if any.
    pub boot_stage: Option<&'a Firmware>,
    /// The firmware to program, if any.
    pub firmware: Option<&'a Firmware>,
    /// Lock debug access at the end.
    pub lock: bool,
    /// Re-program the firmware even when the chip is already provisioned.
    pub force: bool,
    /// Let the chip run at the end (false: leave it halted under the
    /// debugger, for an end-of-line check).
    pub run_after: bool,
    /// Issue the device's X.509 certificate and write it next to the record.
    pub device_ca: Option<&'a DeviceCa>,
}

/// The device CA the station issues certificates with.
pub struct DeviceCa {
    /// Its key (any key URI).
    pub key: Box<dyn Signer>,
    /// Its certificate, PEM.
    pub cert_pem: String,
    /// Validity of device certificates, in days.
    pub days: u32,
}

impl std::fmt::Debug for DeviceCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCa")
            .field("key", &self.key.key_ref().to_string())
            .field("days", &self.days)
            .finish()
    }
}

impl std::fmt::Debug for Job<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("chip", &self.chip.name)
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

/// Why provisioning a chip failed.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The chip or the debug connection.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The backend.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The authority key.
    #[error("authority key: {0}")]
    Signer(#[from] SignerError),
    /// What was read back is not what was written.
    #[error("read-back mismatch in the {0}: the chip does not hold what was written")]
    Readback(&'static str),
    /// The backend's view contradicts the chip's.
    #[error("{0}")]
    Inconsistent(String),
}

/// One step and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Its name.
    pub step: &'static str,
    /// Milliseconds.
    pub ms: f64,
}

/// What happened to one chip: one JSON line with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The chip's hardware ID, once read.
    pub hw_id: Option<String>,
    /// Its serial, once known.
    pub serial: Option<u32>,
    /// `provisioned`, `verified` (already done), or `failed`.
    pub outcome: &'static str,
    /// Why it failed.
    pub error: Option<String>,
    /// Steps in order, with durations.
    pub steps: Vec<Step>,
}

struct Timer {
    steps: Vec<Step>,
}

impl Timer {
    fn run<T>(&mut self, step: &'static str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.steps.push(Step {
            step,
            ms: t.elapsed().as_secs_f64() * 1e3,
        });
        out
    }
}

/// Provision the chip behind `target`. Never panics; every failure is in the
/// report.
pub fn provision(target: &mut dyn Target, job: &Job<'_>) -> Report {
    let mut timer = Timer { steps: Vec::new() };
    let mut report = Report {
        hw_id: None,
        serial: None,
        outcome: "failed",
        error: None,
        steps: Vec::new(),
    };
    match run(target, job, &mut timer, &mut report) {
        Ok(outcome) => report.outcome = outcome,
        Err(e) => report.error = Some(e.to_string()),
    }
    report.steps = timer.steps;
    report
}

fn run(
    target: &mut dyn Target,
    job: &Job<'_>,
    timer: &mut Timer,
    report: &mut Report,
) -> Result<&'static str, FlowError> {
    let chip = job.chip;
    let hw_id = timer.run("read_id", || read_hw_id(target, chip))?;
    report.hw_id = Some(hw_id.to_string());
    let authority_key = job.authority.public_key()?;

    // A chip provisioned before: verify, or finish what a failed run left.
    let mut existing = vec![0u8; partition::IMAGE_LEN];
    timer.run("read_partition", || {
        target.read_memory(chip.partition, &mut existing)
    })?;
    if let Some(record) = valid_record(&existing, hw_id, &authority_key) {
        report.serial = Some(record.body.serial);
        let state = timer.run("backend_lookup", || job.backend.device(hw_id))?;
        match state {
            Some(d) if d.serial != record.body.serial => {
                return Err(FlowError::Inconsistent(format!(
                    "the chip's record says serial {} but the backend has serial {} for hw_id {hw_id}",
                    record.body.serial, d.serial
                )));
            }
            Some(d) if d.status == "active" => {
                firmware(target, job, timer, job.force)?;
                finish(target, job, timer)?;
                return Ok("verified");
            }
            _ => {
                // Written before, never activated: activate it now.
                let (_, secret) = partition::key_block(&existing).ok_or_else(|| {
                    FlowError::Inconsistent("the partition's key block is damaged".into())
                })?;
                firmware(target, job, timer, true)?;
                let secret_hash: [u8; 32] = Sha256::digest(*secret).into();
                timer.run("backend_provision", || {
                    job.backend.provision(hw_id, job.product.as_deref())
                })?;
                timer.run("backend_activate", || {
                    job.backend
                        .activate(record.body.serial, &existing[..RECORD_LEN], &secret_hash)
                })?;
                finish(target, job, timer)?;
                return Ok("provisioned");
            }
        }
    }

    let allocated = timer.run("backend_provision", || {
        job.backend.provision(hw_id, job.product.as_deref())
    })?;
    report.serial = Some(allocated.serial);
    if allocated.status == "active" {
        return Err(FlowError::Inconsistent(format!(
            "serial {} is active in the backend but this chip holds no valid record; \
             revoke it before provisioning the chip again",
            allocated.serial
        )));
    }

    let (device_key, device_pub) = timer.run("generate_key", new_device_key)?;
    let mut secret = Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, secret.as_mut());
    let secret_hash: [u8; 32] = Sha256::digest(*secret).into();

    let record = timer.run("sign_record", || {
        sign_record(
            &RecordRequest {
                hw_id,
                serial: allocated.serial,
                product: product_field(job.product.as_deref()),
                device_pubkey: device_pub,
                issued_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            },
            job.authority,
        )
    })?;

    let cert = match job.device_ca {
        Some(ca) => Some(timer.run("issue_certificate", || {
            let identity = signer::certs::DeviceIdentity {
                public_key: device_pub,
                serial: allocated.serial,
                hw_id,
            };
            signer::certs::device_cert_der(ca.key.as_ref(), &ca.cert_pem, &identity, ca.days)
                .map_err(|e| FlowError::Inconsistent(format!("device certificate: {e}")))
                .and_then(|der| {
                    if der.len() > partition::CERT_MAX {
                        Err(FlowError::Inconsistent(format!(
                            "device certificate of {} bytes does not fit the partition",
                            der.len()
                        )))
                    } else {
                        Ok(der)
                    }
                })
        })?),
        None => None,
    };
    let image = partition::image(&record, &device_key, &secret, cert.as_deref());
    timer.run("program_partition", || {
        target.program_flash(chip, chip.partition, &image)
    })?;
    program_images(target, job, timer)?;
    timer.run("verify_partition", || {
        verify(target, chip.partition, &image, "provisioning partition")
    })?;
    verify_images(target, job, timer)?;
    drop(image);
    drop(device_key);
    drop(secret);

    timer.run("backend_activate", || {
        job.backend
            .activate(allocated.serial, &record, &secret_hash)
    })?;
    finish(target, job, timer)?;
    Ok("provisioned")
}

/// The boot stage and the firmware, each with its program and verify steps.
fn images<'a>(
    job: &Job<'a>,
) -> impl Iterator<Item = (&'a Firmware, &'static str, &'static str, &'static str)> {
    let boot = job
        .boot_stage
        .map(|b| (b, "program_boot_stage", "verify_boot_stage", "boot stage"));
    let fw = job
        .firmware
        .map(|f| (f, "program_firmware", "verify_firmware", "firmware"));
    boot.into_iter().chain(fw)
}

fn program_images(
    target: &mut dyn Target,
    job: &Job<'_>,
    timer: &mut Timer,
) -> Result<(), FlowError> {
    for (img, program, _, _) in images(job) {
        timer.run(program, || {
            target.program_flash(job.chip, img.addr, &img.bytes)
        })?;
    }
    Ok(())
}

fn verify_images(
    target: &mut dyn Target,
    job: &Job<'_>,
    timer: &mut Timer,
) -> Result<(), FlowError> {
    for (img, _, check, what) in images(job) {
        timer.run(check, || verify(target, img.addr, &img.bytes, what))?;
    }
    Ok(())
}

/// On a chip provisioned before: program the boot stage and the firmware if
/// `program`, then verify them.
fn firmware(
    target: &mut dyn Target,
    job: &Job<'_>,
    timer: &mut Timer,
    program: bool,
) -> Result<(), FlowError> {
    if program {
        program_images(target, job, timer)?;
    }
    verify_images(target, job, timer)
}

/// Lock if asked, then let the chip run.
fn finish(target: &mut dyn Target, job: &Job<'_>, timer: &mut Timer) -> Result<(), FlowError> {
    if job.lock {
        timer.run("lock", || target.lock(job.chip))?;
        // Confirming resets the chip into its firmware.
        timer.run("confirm_lock", || target.confirm_lock(job.chip))?;
        return Ok(());
    }
    if job.run_after {
        timer.run("reset", || target.reset_and_run())?;
    }
    Ok(())
}

/// The record at the start of `partition`, if it verifies for `hw_id`.
fn valid_record(
    partition: &[u8],
    hw_id: HwId,
    authority: &P256PublicKey,
) -> Option<firmware::record::Provisioned> {
    firmware::record::verify_provisioning(partition, hw_id, std::slice::from_ref(authority)).ok()
}

/// Read back `expected.len()` bytes at `addr` and compare SHA-256 digests.
fn verify(
    target: &mut dyn Target,
    addr: u32,
    expected: &[u8],
    what: &'static str,
) -> Result<(), FlowError> {
    let mut back = Zeroizing::new(vec![0u8; expected.len()]);
    target.read_memory(addr, &mut back)?;
    if Sha256::digest(&*back) == Sha256::digest(expected) {
        Ok(())
    } else {
        Err(FlowError::Readback(what))
    }
}

/// A new device key: the private scalar (zeroized on drop) and its public key.
fn new_device_key() -> Result<(Zeroizing<[u8; 32]>, P256PublicKey), FlowError> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let mut scalar = Zeroizing::new([0u8; 32]);
    scalar.copy_from_slice(&secret.to_bytes());
    let point = secret.public_key().to_encoded_point(false);
    let public = P256PublicKey::from_sec1(point.as_bytes())
        .map_err(|e| FlowError::Inconsistent(format!("generated key: {e}")))?;
    Ok((scalar, public))
}

/// The record's fixed-size product field.
fn product_field(name: Option<&str>) -> [u8; firmware::record::PRODUCT_LEN] {
    let mut field = [0u8; firmware::record::PRODUCT_LEN];
    if let Some(n) = name {
        let n = n.as_bytes();
        let len = n.len().min(field.len());
        field[..len].copy_from_slice(&n[..len]);
    }
    field
}
