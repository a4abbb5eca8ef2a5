//! Where devices are kept: one trait, so the same handlers run on SQLite
//! (local server, tests) and DynamoDB (AWS).

pub mod sqlite;

use firmware::record::HwId;

use crate::model::{Device, Serial};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The hardware ID belongs to a revoked device.
    #[error("device with hw_id {0} is revoked")]
    Revoked(HwId),
    /// No such device.
    #[error("no device with serial {0}")]
    UnknownSerial(Serial),
    /// The serial sequence is exhausted.
    #[error("serial numbers are exhausted")]
    SerialsExhausted,
    /// Stored data that does not parse (a corrupted or foreign database).
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(String),
}

/// The outcome of [`Store::provision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The device, new or existing.
    pub device: Device,
    /// Whether this call allocated its serial.
    pub created: bool,
}

/// A device registry.
pub trait Store: Send + Sync {
    /// The serial of `hw_id`: the existing one, or the next of the global
    /// sequence (status `factory_only`). Atomic: concurrent calls for the same
    /// `hw_id` get the same serial, and no serial is skipped or reused.
    fn provision(&self, hw_id: HwId, product: Option<&str>) -> Result<Provisioned, StoreError>;

    /// The device with this serial, if any.
    fn device_by_serial(&self, serial: Serial) -> Result<Option<Device>, StoreError>;

    /// The device with this hardware ID, if any.
    fn device_by_hw_id(&self, hw_id: HwId) -> Result<Option<Device>, StoreError>;
}
