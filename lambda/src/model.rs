//! Devices as the registry knows them.

use firmware::record::{HwId, KeyOrigin};

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
    /// Where that key was made (from the activated record's flags).
    pub key_origin: Option<KeyOrigin>,
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A factory station: provision and activate devices, read the registry.
    Factory,
    /// An administrator: everything a factory may, and revoke devices.
    Admin,
}

impl Role {
    /// The stored and command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Factory => "factory",
            Self::Admin => "admin",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "factory" => Some(Self::Factory),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// Whether this role includes `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self == Self::Admin || self == needed
    }
}

/// An authenticated caller of the factory/admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Token name, or the IAM role ARN.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Caller {
    /// How the caller appears in the audit log: `ROLE:NAME`.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.name)
    }
}
