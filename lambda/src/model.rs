//! Devices as the registry knows them.

use firmware::record::HwId;

/// A device serial: 1, 2, 3, … in allocation order.
pub type Serial = u32;

/// Where a device is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Serial allocated at the factory; not yet activated.
    FactoryOnly,
    /// Provisioning record verified; the device may authenticate.
    Active,
    /// Refused from now on.
    Revoked,
}

impl DeviceStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FactoryOnly => "factory_only",
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "factory_only" => Some(Self::FactoryOnly),
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// A device record in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Hardware ID (FICR DEVICEID).
    pub hw_id: HwId,
    /// Serial.
    pub serial: Serial,
    /// Product name, if given at provisioning.
    pub product: Option<String>,
    /// Status.
    pub status: DeviceStatus,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
    /// The per-device public key (SEC1), once activated.
    pub device_pubkey: Option<[u8; 65]>,
}
