//! The chip table (`factory/chips.toml`, compiled in): where each nRF part
//! keeps its FICR `DEVICEID`, its flash geometry, the default provisioning
//! partition and how debug access is locked.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The table as shipped.
pub const CHIPS_TOML: &str = include_str!("../chips.toml");

/// How debug access is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockMechanism {
    /// nRF51: UICR.RBPCONF read-back protection of all flash.
    UicrRbpconf,
    /// UICR.APPROTECT.
    UicrApprotect,
    /// UICR.APPROTECT, on parts that also need the hardware/CTRL-AP setting.
    UicrApprotectHw,
}

/// One chip.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chip {
    /// Its name (the table key).
    #[serde(skip)]
    pub name: String,
    /// Address of FICR DEVICEID[0] (DEVICEID[1] follows).
    pub deviceid: u32,
    /// Flash size in bytes.
    pub flash_size: u32,
    /// Erase page size in bytes.
    pub page_size: u32,
    /// Default provisioning partition address.
    pub partition: u32,
    /// How debug access is locked.
    pub lock: LockMechanism,
    /// The UICR word written to lock.
    pub approtect: u32,
    /// The value written there.
    pub lock_value: u32,
    /// The NVM controller's READY register (bit 0 set when idle).
    pub nvm_ready: u32,
    /// The NVM controller's CONFIG register (1 enables writes, 0 ends them).
    pub nvm_config: u32,
    /// RAM address of the key mailbox (`firmware::keygen`).
    pub key_mailbox: u32,
    /// The probe-rs target name used with `--probe` (core 0 is provisioned).
    pub probe_rs_target: String,
    /// Whether the addresses were checked against the MDK or a chip.
    pub verified: bool,
}

/// Why a chip table or a chip name was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChipError {
    /// The table does not parse.
    #[error("chip table: {0}")]
    Table(String),
    /// A chip's values are inconsistent.
    #[error("chip table: {chip}: {problem}")]
    Invalid {
        /// Which chip.
        chip: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// Not in the table.
    #[error("unknown chip {name:?}; known chips: {known}")]
    Unknown {
        /// What was asked for.
        name: String,
        /// The table's chips, comma-separated.
        known: String,
    },
}

/// The known chips, by name.
#[derive(Debug, Clone)]
pub struct ChipTable {
    chips: BTreeMap<String, Chip>,
}

impl ChipTable {
    /// The table compiled into the station.
    pub fn builtin() -> Result<Self, ChipError> {
        Self::parse(CHIPS_TOML)
    }

    /// Parse and check a table.
    pub fn parse(text: &str) -> Result<Self, ChipError> {
        let raw: BTreeMap<String, Chip> =
            toml::from_str(text).map_err(|e| ChipError::Table(e.message().to_owned()))?;
        let mut chips = BTreeMap::new();
        for (name, mut chip) in raw {
            let invalid = |problem| ChipError::Invalid {
                chip: name.clone(),
                problem,
            };
            if chip.page_size == 0 || !chip.page_size.is_power_of_two() {
                return Err(invalid("page_size must be a power of two"));
            }
            if chip.partition % chip.page_size != 0 {
                return Err(invalid("partition must start on a page"));
            }
            if chip.flash_size < chip.page_size || chip.partition > chip.flash_size - chip.page_size
            {
                return Err(invalid("partition must lie inside flash"));
            }
            if [
                chip.deviceid,
                chip.approtect,
                chip.nvm_ready,
                chip.nvm_config,
                chip.key_mailbox,
            ]
            .iter()
            .any(|a| a % 4 != 0)
            {
                return Err(invalid("register addresses must be word-aligned"));
            }
            if !(0x2000_0000..0x4000_0000).contains(&chip.key_mailbox) {
                return Err(invalid("key_mailbox must lie in RAM (0x20000000 up)"));
            }
            chip.name = name.clone();
            chips.insert(name, chip);
        }
        Ok(Self { chips })
    }

    /// The chip called `name` (case-insensitive), or an error listing the
    /// known ones.
    pub fn get(&self, name: &str) -> Result<&Chip, ChipError> {
        self.chips
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| ChipError::Unknown {
                name: name.to_owned(),
                known: self.names().collect::<Vec<_>>().join(", "),
            })
    }

    /// Every chip name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.chips.keys().map(String::as_str)
    }

    /// Every chip.
    pub fn iter(&self) -> impl Iterator<Item = &Chip> {
        self.chips.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_has_the_parts_the_fleet_uses() {
        let t = ChipTable::builtin().unwrap();
        for name in [
            "nrf51822",
            "nrf52832",
            "nrf52833",
            "nrf52840",
            "nrf5340-app",
            "nrf9160",
            "nrf9161",
            "nrf54l15",
        ] {
            t.get(name).unwrap();
        }
        let n51 = t.get("nRF51822").unwrap();
        assert_eq!((n51.deviceid, n51.partition), (0x1000_0060, 0x3F000));
        assert_eq!(t.get("nrf9160").unwrap().deviceid, 0x00FF_0204);
    }

    #[test]
    fn unknown_chips_are_refused_with_the_list() {
        let t = ChipTable::builtin().unwrap();
        let e = t.get("stm32f4").unwrap_err().to_string();
        assert!(
            e.contains("stm32f4") && e.contains("nrf52840") && e.contains("nrf51822"),
            "{e}"
        );
    }

    #[test]
    fn inconsistent_entries_are_refused() {
        let entry_with = |partition: &str, mailbox: &str| {
            format!(
                "[x]\ndeviceid = 0x10000060\nflash_size = 0x40000\npage_size = 0x400\npartition = {partition}\nlock = \"uicr-approtect\"\napprotect = 0x10001208\nlock_value = 0\nnvm_ready = 0x4001E400\nnvm_config = 0x4001E504\nkey_mailbox = {mailbox}\nprobe_rs_target = \"nRF51822_xxAA\"\nverified = true\n"
            )
        };
        let entry = |partition: &str| entry_with(partition, "0x20003F00");
        ChipTable::parse(&entry("0x3F000")).unwrap();
        assert!(
            ChipTable::parse(&entry_with("0x3F000", "0x3F00")).is_err(),
            "mailbox outside RAM"
        );
        assert!(ChipTable::parse(&entry("0x3F001")).is_err(), "unaligned");
        assert!(
            ChipTable::parse(&entry("0x40000")).is_err(),
            "outside flash"
        );
        assert!(
            ChipTable::parse("[x]\ndeviceid = 1").is_err(),
            "missing fields"
        );
        assert!(ChipTable::parse("not toml [").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_table_or_an_error(text in "[ -~\\n]{0,200}") {
            let _ = ChipTable::parse(&text);
        }
    }
}
