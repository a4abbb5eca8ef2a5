//! The provisioning flow for one chip, over any [`Target`]
//! (`docs/factory.md`, "Order of a provisioning run"):
//!
//! 1. read `hw_id` from FICR and the record area of the partition (never
//!    its key region); a chip whose record verifies and which the backend
//!    has `active` is only verified (and locked, if asked);
//! 2. program and verify the boot stage and the firmware;
//! 3. the device key: with `--key-origin device` the chip makes it and proves
//!    possession through its key mailbox ([`crate::device_key`]); with
//!    `--key-origin station` the station makes it and writes the key block,
//!    header last;
//! 4. `POST /v1/provision` (idempotent) for the serial; sign the record for
//!    the chip's public key with the authority key; write the certificate
//!    block, then the record, the commit marker, without erasing the key
//!    block; read both back;
//! 5. with `--lock`: lock, confirm the lock, and only then `POST …/activate`;
//!    without: activate, then let the chip run.
//!
//! A fault anywhere leaves the device `factory_only` (activation is last),
//! and the next run recovers: a record already on the chip is kept when the
//! chip's key is the record's, else the partition is erased and the chip
//! starts again (it was never active).

use std::time::{Duration, Instant};

use firmware::partition::{
    CERT_BLOCK_OFFSET, KEY_BLOCK_HEADER_LEN, KEY_BLOCK_OFFSET, PARTITION_LEN,
};
use firmware::record::{HwId, KeyOrigin, RECORD_LEN};
use firmware::P256PublicKey;
use serde::Serialize;
use sha2::{Digest, Sha256};
use signer::keys::{Signer, SignerError};
use signer::record::{sign_record, RecordRequest};
use zeroize::Zeroizing;

use crate::backend::{Backend, BackendError};
use crate::chips::Chip;
use crate::device_key::{request_key, ChipKey, KeyRequestError};
use crate::partition;
use crate::target::{read_hw_id, write_nvm_words, Target, TargetError};

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
    /// Where the device key is made.
    pub key_origin: KeyOrigin,
    /// How long the chip has to make its key and answer (device origin).
    pub key_timeout: Duration,
    /// Production rules: `lock` and device-made keys are required, and the
    /// backend must be HTTPS or on this machine ([`production_refusal`]).
    pub production: bool,
}

/// How long a chip gets by default to make its key and answer.
pub const DEFAULT_KEY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a run may not go ahead under `--production`, if it may not: debug
/// access must be locked, the key must be born on the chip, and the backend
/// must be reached over HTTPS unless it is on this machine.
pub fn production_refusal(lock: bool, origin: KeyOrigin, backend_url: &str) -> Option<String> {
    if !lock {
        return Some("--production requires --lock: an open chip can be read out".into());
    }
    if origin != KeyOrigin::Device {
        return Some(
            "--production requires --key-origin device: the station must never hold a device key"
                .into(),
        );
    }
    if let Some(host) = crate::backend::remote_plain_http_host(backend_url) {
        return Some(format!(
            "--production refuses plain http:// to {host}: the token and the records would \
             cross the network in clear; use https://"
        ));
    }
    None
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
            .field("key_origin", &self.key_origin)
            .field("production", &self.production)
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
    /// The chip's own key could not be had or was refused.
    #[error(transparent)]
    ChipKey(#[from] KeyRequestError),
    /// The job breaks the production rules.
    #[error("{0}")]
    Production(String),
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
    /// Where its key was made (`device`, `station`), once known.
    pub key_origin: Option<&'static str>,
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
        key_origin: None,
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
    if job.production {
        if let Some(why) = production_refusal(job.lock, job.key_origin, job.backend.url()) {
            return Err(FlowError::Production(why));
        }
    }
    let chip = job.chip;
    let hw_id = timer.run("read_id", || read_hw_id(target, chip))?;
    report.hw_id = Some(hw_id.to_string());
    let authority_key = job.authority.public_key()?;

    // A chip provisioned before: verify, or finish what a failed run left.
    // Only the record area is read here, never the key region.
    let mut head = [0u8; RECORD_LEN];
    timer.run("read_record", || {
        target.read_memory(chip.partition, &mut head)
    })?;
    let on_chip = valid_record(&head, hw_id, &authority_key);
    if let Some(record) = &on_chip {
        report.serial = Some(record.body.serial);
        report.key_origin = Some(record.body.key_origin.as_str());
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
                if job.lock {
                    lock(target, job, timer)?;
                } else if job.run_after {
                    timer.run("reset", || target.reset_and_run())?;
                }
                return Ok("verified");
            }
            // Written before, never activated: kept below if the chip's key
            // is the record's.
            _ => {}
        }
    }

    // The boot stage and the firmware first: with device-made keys it is
    // the firmware that makes the key.
    program_images(target, job, timer)?;
    verify_images(target, job, timer)?;

    let public = match chip_key(target, job, timer, hw_id, on_chip.as_ref())? {
        KeyState::Committed => {
            let Some(record) = on_chip else {
                return Err(FlowError::Inconsistent("no record to recover".into()));
            };
            let serial = record.body.serial;
            let allocated = timer.run("backend_provision", || {
                job.backend.provision(hw_id, job.product.as_deref())
            })?;
            if allocated.serial != serial {
                return Err(FlowError::Inconsistent(format!(
                    "the chip's record says serial {serial} but the backend allocated {}",
                    allocated.serial
                )));
            }
            commit(target, job, timer, serial, &head)?;
            return Ok("provisioned");
        }
        KeyState::Ready(public) => public,
    };
    report.key_origin = Some(job.key_origin.as_str());

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

    let record = timer.run("sign_record", || {
        sign_record(
            &RecordRequest {
                hw_id,
                serial: allocated.serial,
                product: product_field(job.product.as_deref()),
                device_pubkey: public,
                issued_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                key_origin: job.key_origin,
            },
            job.authority,
        )
    })?;

    if let Some(ca) = job.device_ca {
        let block = timer.run("issue_certificate", || {
            certificate_block(ca, public, allocated.serial, hw_id)
        })?;
        let at = chip.partition + CERT_BLOCK_OFFSET as u32;
        timer.run("write_certificate", || {
            write_nvm_words(target, chip, at, &block)
        })?;
        timer.run("verify_certificate", || {
            verify(target, at, &block, "certificate block")
        })?;
    }
    // The record last: it is the commit marker of everything above.
    timer.run("write_record", || {
        write_nvm_words(target, chip, chip.partition, &record)
    })?;
    timer.run("verify_record", || {
        verify(target, chip.partition, &record, "provisioning record")
    })?;
    commit(target, job, timer, allocated.serial, &record)?;
    Ok("provisioned")
}

/// The device key, as the run found or made it.
enum KeyState {
    /// The chip's key is the one its record (already on the chip) names.
    Committed,
    /// The chip holds this key, and the partition holds no record and no
    /// certificate yet.
    Ready(P256PublicKey),
}

/// Get the chip's key ready for a record: find it (the chip's answer, or
/// with station keys the key block), keep a record that names it, or start
/// the partition again (erase it; the chip makes a new key, or the station
/// writes one) when anything there does not fit. Runs at most twice.
fn chip_key(
    target: &mut dyn Target,
    job: &Job<'_>,
    timer: &mut Timer,
    hw_id: HwId,
    on_chip: Option<&firmware::record::Provisioned>,
) -> Result<KeyState, FlowError> {
    let chip = job.chip;
    let mut on_chip = on_chip;
    let mut problem = "";
    for attempt in 0..2 {
        let found = match job.key_origin {
            KeyOrigin::Device => match timer.run("device_key", || {
                request_key(target, chip, hw_id, job.key_timeout)
            })? {
                ChipKey::Key(k) => Some(k),
                ChipKey::NoKey => None,
            },
            KeyOrigin::Station => {
                timer.run("read_key_block", || station_key_on_chip(target, chip))?
            }
        };
        if let (Some(record), Some(key)) = (on_chip, found) {
            if record.body.device_pubkey == key && record.body.key_origin == job.key_origin {
                return Ok(KeyState::Committed);
            }
        }
        let fresh =
            on_chip.is_none() && timer.run("read_unused", || partition_unused(target, chip))?;
        problem = match (found, fresh) {
            (None, _) => "its firmware does not make a key",
            (Some(_), false) => "the partition does not read as erased after erasing it",
            (Some(_), true) => "",
        };
        match (job.key_origin, found) {
            (KeyOrigin::Device, Some(key)) if fresh => return Ok(KeyState::Ready(key)),
            _ if attempt == 0 => {
                // Never active: start the partition again.
                let erased = vec![0xffu8; PARTITION_LEN];
                timer.run("erase_partition", || {
                    target.program_flash(chip, chip.partition, &erased)
                })?;
                on_chip = None;
                if job.key_origin == KeyOrigin::Station {
                    return Ok(KeyState::Ready(inject_key(target, chip, timer)?));
                }
            }
            _ => break,
        }
    }
    Err(FlowError::Inconsistent(format!(
        "the chip cannot be started again after its partition was erased: {problem}"
    )))
}

/// With station-made keys: the key in the chip's key block, if well-formed.
fn station_key_on_chip(
    target: &mut dyn Target,
    chip: &Chip,
) -> Result<Option<P256PublicKey>, FlowError> {
    let mut block = Zeroizing::new(vec![0u8; partition::IMAGE_LEN]);
    target.read_memory(chip.partition, &mut block)?;
    Ok(partition::key_block(&block).and_then(|k| public_of(&k).ok()))
}

/// Whether the partition's record area and certificate area are erased
/// (the key region is not read).
fn partition_unused(target: &mut dyn Target, chip: &Chip) -> Result<bool, FlowError> {
    let mut record = [0u8; KEY_BLOCK_OFFSET];
    target.read_memory(chip.partition, &mut record)?;
    let mut rest = vec![0u8; PARTITION_LEN - CERT_BLOCK_OFFSET];
    target.read_memory(chip.partition + CERT_BLOCK_OFFSET as u32, &mut rest)?;
    Ok(record.iter().chain(&rest).all(|&b| b == 0xff))
}

/// With station-made keys: make a key, write its key block (header last) and
/// check it; the key is wiped when this returns.
fn inject_key(
    target: &mut dyn Target,
    chip: &Chip,
    timer: &mut Timer,
) -> Result<P256PublicKey, FlowError> {
    let (device_key, public) = timer.run("generate_key", new_device_key)?;
    let (image, header) = partition::station_key_block(&device_key);
    timer.run("write_key_block", || {
        target.program_flash(chip, chip.partition, &image)?;
        write_nvm_words(
            target,
            chip,
            chip.partition + KEY_BLOCK_OFFSET as u32,
            &header,
        )
    })?;
    let mut expected = image.clone();
    expected[KEY_BLOCK_OFFSET..KEY_BLOCK_OFFSET + KEY_BLOCK_HEADER_LEN].copy_from_slice(&header);
    timer.run("verify_key_block", || {
        verify(target, chip.partition, &expected, "key block")
    })?;
    Ok(public)
}

/// The device certificate's block for the partition.
fn certificate_block(
    ca: &DeviceCa,
    public: P256PublicKey,
    serial: u32,
    hw_id: HwId,
) -> Result<Vec<u8>, FlowError> {
    let identity = signer::certs::DeviceIdentity {
        public_key: public,
        serial,
        hw_id,
    };
    let der = signer::certs::device_cert_der(ca.key.as_ref(), &ca.cert_pem, &identity, ca.days)
        .map_err(|e| FlowError::Inconsistent(format!("device certificate: {e}")))?;
    partition::certificate_block(&der).ok_or_else(|| {
        FlowError::Inconsistent(format!(
            "device certificate of {} bytes does not fit the partition",
            der.len()
        ))
    })
}

/// The record is on the chip: with `--lock`, lock and confirm, then activate
/// (a chip whose lock fails stays `factory_only`); without, activate and let
/// the chip run.
fn commit(
    target: &mut dyn Target,
    job: &Job<'_>,
    timer: &mut Timer,
    serial: u32,
    record: &[u8],
) -> Result<(), FlowError> {
    if job.lock {
        lock(target, job, timer)?;
    }
    timer.run("backend_activate", || job.backend.activate(serial, record))?;
    if !job.lock && job.run_after {
        timer.run("reset", || target.reset_and_run())?;
    }
    Ok(())
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

/// Lock debug access and confirm it took (the confirmation resets the chip
/// into its firmware).
fn lock(target: &mut dyn Target, job: &Job<'_>, timer: &mut Timer) -> Result<(), FlowError> {
    timer.run("lock", || target.lock(job.chip))?;
    timer.run("confirm_lock", || target.confirm_lock(job.chip))?;
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
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let mut scalar = Zeroizing::new([0u8; 32]);
    scalar.copy_from_slice(&secret.to_bytes());
    let public = public_of(&scalar)?;
    Ok((scalar, public))
}

/// The public key of a private scalar.
fn public_of(scalar: &[u8; 32]) -> Result<P256PublicKey, FlowError> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let secret = p256::SecretKey::from_slice(scalar)
        .map_err(|_| FlowError::Inconsistent("the key block holds no P-256 key".into()))?;
    let point = secret.public_key().to_encoded_point(false);
    P256PublicKey::from_sec1(point.as_bytes())
        .map_err(|e| FlowError::Inconsistent(format!("device key: {e}")))
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
