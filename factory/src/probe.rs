//! Real debug probes (J-Link, CMSIS-DAP, ST-Link) through probe-rs: its
//! built-in nRF targets bring the flash algorithms and Nordic's debug
//! sequences (CTRL-AP, APPROTECT status). This layer only maps the [`Target`]
//! calls onto a probe-rs session; the flow, the lock sequence and every check
//! above raw access are shared with the other targets.

use std::fmt;
use std::str::FromStr;

use probe_rs::flashing::DownloadOptions;
use probe_rs::probe::list::Lister;
use probe_rs::probe::{DebugProbeInfo, DebugProbeSelector};
use probe_rs::{MemoryInterface, Permissions, Session};

use crate::chips::Chip;
use crate::target::{Target, TargetError};

/// Which probe: `auto` (the only one attached) or `VID:PID[:SERIAL]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeSelector {
    /// The one probe attached; refused when there are none or several.
    Auto,
    /// A probe by USB IDs and, optionally, serial number.
    Usb(DebugProbeSelector),
}

/// A `--probe` value that is neither `auto` nor `VID:PID[:SERIAL]`.
#[derive(Debug, thiserror::Error)]
#[error("--probe {given:?}: expected `auto` or VID:PID[:SERIAL] in hex, e.g. 1366:1015 ({reason})")]
pub struct ProbeSelectorError {
    given: String,
    reason: String,
}

impl FromStr for ProbeSelector {
    type Err = ProbeSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        let bad = |reason: String| ProbeSelectorError {
            given: s.to_owned(),
            reason,
        };
        // probe-rs accepts a bare VID:PID too; so do we, but nothing looser.
        let mut parts = s.splitn(3, ':');
        for what in ["vendor ID", "product ID"] {
            let part = parts.next().unwrap_or_default();
            if part.is_empty() || part.len() > 4 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("bad {what}")));
            }
        }
        DebugProbeSelector::from_str(s)
            .map(Self::Usb)
            .map_err(|e| bad(e.to_string()))
    }
}

impl fmt::Display for ProbeSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Usb(s) => write!(f, "{s}"),
        }
    }
}

/// One attached probe, for `factory probes`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeInfo {
    /// What it calls itself.
    pub name: String,
    /// The selector that picks exactly this probe.
    pub selector: String,
}

impl From<&DebugProbeInfo> for ProbeInfo {
    fn from(info: &DebugProbeInfo) -> Self {
        let mut selector = format!("{:04x}:{:04x}", info.vendor_id, info.product_id);
        if let Some(serial) = &info.serial_number {
            selector.push(':');
            selector.push_str(serial);
        }
        Self {
            name: info.identifier.clone(),
            selector,
        }
    }
}

/// The probes attached to this machine.
pub fn list_probes() -> Vec<ProbeInfo> {
    Lister::new()
        .list_all()
        .iter()
        .map(ProbeInfo::from)
        .collect()
}

/// A chip behind a probe-rs probe. The session is opened on first use and
/// closed by [`Target::reset_and_run`], so the same value can wait for the
/// next chip in station mode.
pub struct ProbeRsTarget {
    selector: ProbeSelector,
    target_name: String,
    session: Option<Session>,
}

impl fmt::Debug for ProbeRsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeRsTarget")
            .field("selector", &self.selector.to_string())
            .field("target", &self.target_name)
            .field("attached", &self.session.is_some())
            .finish()
    }
}

impl ProbeRsTarget {
    /// Open the probe and attach to `chip` (its probe-rs target).
    pub fn open(selector: &ProbeSelector, chip: &Chip) -> Result<Self, TargetError> {
        let mut target = Self {
            selector: selector.clone(),
            target_name: chip.probe_rs_target.clone(),
            session: None,
        };
        target.session()?;
        Ok(target)
    }

    fn session(&mut self) -> Result<&mut Session, TargetError> {
        if self.session.is_none() {
            self.session = Some(attach(&self.selector, &self.target_name)?);
        }
        self.session
            .as_mut()
            .ok_or_else(|| TargetError::Probe("not attached".into()))
    }

    fn download(&mut self, addr: u32, data: &[u8], keep: bool) -> Result<(), TargetError> {
        let session = self.session()?;
        let mut loader = session.target().flash_loader();
        loader
            .add_data(u64::from(addr), data)
            .map_err(|e| TargetError::Probe(format!("flash at {addr:#010x}: {e}")))?;
        let mut options = DownloadOptions::default();
        // Whole pages are erased, as on the other targets; the flow reads
        // everything back itself.
        options.keep_unwritten_bytes = keep;
        loader
            .commit(session, options)
            .map_err(|e| TargetError::Probe(format!("flash at {addr:#010x}: {e}")))
    }
}

fn attach(selector: &ProbeSelector, target_name: &str) -> Result<Session, TargetError> {
    let lister = Lister::new();
    let probe = match selector {
        ProbeSelector::Usb(s) => lister.open(s.clone()),
        ProbeSelector::Auto => {
            let found = lister.list_all();
            match found.as_slice() {
                [one] => lister.open(one),
                [] => return Err(TargetError::Probe("no debug probe is attached".into())),
                many => {
                    let names: Vec<String> =
                        many.iter().map(|p| ProbeInfo::from(p).selector).collect();
                    return Err(TargetError::Probe(format!(
                        "{} probes attached; pick one with --probe: {}",
                        many.len(),
                        names.join(", ")
                    )));
                }
            }
        }
    }
    .map_err(|e| TargetError::Probe(format!("cannot open probe {selector}: {e}")))?;
    probe
        .attach(target_name, Permissions::default())
        .map_err(|e| attach_error(&e, target_name))
}

/// probe-rs refuses to attach to a protected nRF without permission to erase
/// it; say so in the station's words.
fn attach_error(e: &probe_rs::Error, target_name: &str) -> TargetError {
    if is_locked(e) {
        TargetError::Probe(format!(
            "the {target_name} is locked (APPROTECT); only a full erase reopens it"
        ))
    } else {
        TargetError::Probe(format!("cannot attach to {target_name}: {e}"))
    }
}

fn is_locked(e: &probe_rs::Error) -> bool {
    use probe_rs::architecture::arm::ArmError;
    matches!(
        e,
        probe_rs::Error::MissingPermissions(_)
            | probe_rs::Error::Arm(ArmError::MissingPermissions(_))
    )
}

fn probe_err(e: probe_rs::Error) -> TargetError {
    TargetError::Probe(e.to_string())
}

impl Target for ProbeRsTarget {
    fn read_memory(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), TargetError> {
        let mut core = self.session()?.core(0).map_err(probe_err)?;
        core.read(u64::from(addr), buf).map_err(probe_err)
    }

    fn write_memory(&mut self, addr: u32, data: &[u8]) -> Result<(), TargetError> {
        let mut core = self.session()?.core(0).map_err(probe_err)?;
        core.write(u64::from(addr), data).map_err(probe_err)?;
        core.flush().map_err(probe_err)
    }

    fn program_flash(&mut self, _chip: &Chip, addr: u32, data: &[u8]) -> Result<(), TargetError> {
        self.download(addr, data, false)
    }

    fn reset_and_run(&mut self) -> Result<(), TargetError> {
        if let Some(mut session) = self.session.take() {
            session
                .core(0)
                .map_err(probe_err)?
                .reset()
                .map_err(probe_err)?;
        }
        Ok(())
    }

    /// Close the session without a reset; the chip goes on running and the
    /// next access attaches again.
    fn release(&mut self) -> Result<(), TargetError> {
        self.session.take();
        Ok(())
    }

    /// Reset so APPROTECT latches, then attach afresh: probe-rs's Nordic
    /// sequences read CTRL-AP's APPROTECTSTATUS and refuse a protected chip
    /// unless allowed to erase it. That refusal is the confirmation; a
    /// successful read of FICR means the lock did not take.
    fn confirm_lock(&mut self, chip: &Chip) -> Result<(), TargetError> {
        self.reset_and_run()?;
        match attach(&self.selector, &self.target_name) {
            Err(TargetError::Probe(m)) if m.contains("locked (APPROTECT)") => Ok(()),
            Err(e) => Err(e),
            Ok(mut session) => {
                let mut word = [0u8; 4];
                let read = session
                    .core(0)
                    .and_then(|mut c| c.read(u64::from(chip.deviceid), &mut word));
                match read {
                    Err(_) => Ok(()),
                    Ok(()) => Err(TargetError::NotLocked(format!(
                        "FICR at {:#010x} is still readable through the probe",
                        chip.deviceid
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chips::ChipTable;
    use probe_rs::config::{MemoryRegion, Registry};

    #[test]
    fn selectors_parse_or_explain() {
        assert_eq!(
            "auto".parse::<ProbeSelector>().unwrap(),
            ProbeSelector::Auto
        );
        let jlink: ProbeSelector = "1366:1015:000683512345".parse().unwrap();
        assert_eq!(jlink.to_string(), "1366:1015:000683512345");
        "0d28:0204".parse::<ProbeSelector>().unwrap();
        for bad in [
            "",
            "jlink",
            "1366",
            "1366:",
            "xyz1:0204",
            "12345:0204",
            ":0204",
        ] {
            let e = bad.parse::<ProbeSelector>().unwrap_err().to_string();
            assert!(e.contains("VID:PID"), "{bad:?}: {e}");
        }
    }

    /// Every chip names a probe-rs target whose memory map agrees with ours:
    /// the partition lies in its flash, and flash is at least as large.
    #[test]
    fn chip_table_agrees_with_probe_rs_targets() {
        let registry = Registry::from_builtin_families();
        let table = ChipTable::builtin().unwrap();
        for chip in table.iter() {
            let target = registry
                .get_target_by_name(&chip.probe_rs_target)
                .unwrap_or_else(|e| panic!("{}: {e}", chip.name));
            let nvm: Vec<_> = target
                .memory_map
                .iter()
                .filter_map(|r| match r {
                    MemoryRegion::Nvm(n) => Some(n.range.clone()),
                    _ => None,
                })
                .collect();
            let holds = |a: u32, len: u32| {
                nvm.iter()
                    .any(|r| r.start <= u64::from(a) && u64::from(a) + u64::from(len) <= r.end)
            };
            assert!(
                holds(chip.partition, chip.page_size),
                "{}: partition {:#x} outside {}'s flash {nvm:x?}",
                chip.name,
                chip.partition,
                chip.probe_rs_target
            );
            assert!(holds(0, chip.flash_size), "{}: flash size", chip.name);
        }
    }

    #[test]
    fn without_a_probe_attach_fails_with_a_clear_message() {
        // CI machines have no probes; a machine with exactly one would attach.
        if !list_probes().is_empty() {
            return;
        }
        let table = ChipTable::builtin().unwrap();
        let chip = table.get("nrf52840").unwrap();
        let e = ProbeRsTarget::open(&ProbeSelector::Auto, chip)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no debug probe is attached"), "{e}");
        let sel: ProbeSelector = "1366:1015".parse().unwrap();
        let e = ProbeRsTarget::open(&sel, chip).unwrap_err().to_string();
        assert!(e.contains("cannot open probe 1366:1015"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn any_selector_text_parses_or_errs(text in "[ -~]{0,40}") {
            let _ = text.parse::<ProbeSelector>();
        }
    }
}
