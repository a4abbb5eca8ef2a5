//! Where devices are kept: one trait, so the same handlers run on SQLite
//! (local server, tests) and DynamoDB (AWS).

pub mod dynamodb;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use firmware::record::{HwId, KeyOrigin};

use crate::audit::{AuditEntry, ChainHead, ChainedEntry};
use crate::model::{Device, Order, Release, Role, Serial, TokenInfo};

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The hardware ID given does not match the device's.
    #[error("serial {serial} belongs to hw_id {registered}, not {given}")]
    HwIdMismatch {
        /// The serial.
        serial: Serial,
        /// The registered hardware ID.
        registered: HwId,
        /// The one given.
        given: HwId,
    },
    /// The device is already active with a different record.
    #[error("serial {0} is already active with another provisioning record")]
    AlreadyActive(Serial),
    /// A token with this name exists already.
    #[error("a token named {0:?} exists already")]
    NameTaken(String),
    /// No token with this name.
    #[error("no token named {0:?}")]
    UnknownToken(String),
    /// No order with this name.
    #[error("no order named {0:?}")]
    UnknownOrder(String),
    /// The order is outside its validity window.
    #[error("order {0:?} is not open now")]
    OrderClosed(String),
    /// The order has created all its devices.
    #[error("order {0:?} has created all the devices it may")]
    OrderExhausted(String),
    /// The hardware ID is not on the order's list.
    #[error("hw_id {0} is not on the order's list")]
    NotOnAllowList(HwId),
    /// Another product than the order's.
    #[error("order {0:?} is for another product")]
    WrongProduct(String),
    /// No release with this name.
    #[error("no release named {0:?}")]
    UnknownRelease(String),
    /// The device has no public key yet (not activated).
    #[error("serial {0} has no public key yet")]
    NoDeviceKey(Serial),
    /// Stored data that does not parse (a corrupted or foreign database).
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(String),
}

impl StoreError {
    /// The stable reason code (API error code and audit outcome).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Revoked(_) => "revoked",
            Self::UnknownSerial(_) => "unknown_serial",
            Self::SerialsExhausted => "serials_exhausted",
            Self::HwIdMismatch { .. } => "hw_id_mismatch",
            Self::AlreadyActive(_) => "already_active",
            Self::NameTaken(_) => "name_taken",
            Self::UnknownToken(_) => "unknown_token",
            Self::UnknownOrder(_) => "unknown_order",
            Self::OrderClosed(_) => "order_closed",
            Self::OrderExhausted(_) => "order_exhausted",
            Self::NotOnAllowList(_) => "not_on_allow_list",
            Self::WrongProduct(_) => "wrong_product",
            Self::UnknownRelease(_) => "unknown_release",
            Self::NoDeviceKey(_) => "no_device_key",
            Self::Corrupt(_) | Self::Database(_) => "internal",
        }
    }
}

/// The outcome of [`Store::provision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The device, new or existing.
    pub device: Device,
    /// Whether this call allocated its serial.
    pub created: bool,
}

/// A single-use authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Its id (random, unguessable).
    pub id: String,
    /// The device it was issued to.
    pub serial: Serial,
    /// The nonce the device signs.
    pub nonce: [u8; 32],
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// Why a challenge cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeRefusal {
    /// No such challenge.
    #[error("unknown challenge")]
    Unknown,
    /// Already used (a replay).
    #[error("challenge already used")]
    Replayed,
    /// Past its expiry.
    #[error("challenge expired")]
    Expired,
}

/// What activation stores: public data and hashes only, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The hardware ID the record names (must be the registered one).
    pub hw_id: HwId,
    /// The per-device public key from the verified record.
    pub device_pubkey: [u8; 65],
    /// Where the device key was made, as the verified record says.
    pub key_origin: KeyOrigin,
    /// SHA-256 of the whole provisioning record.
    pub record_hash: [u8; 32],
}

/// A store operation's answer: a future that borrows the store and the
/// arguments it was given.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A device registry, async end to end: no operation holds a thread while it
/// waits for the database (SQLite answers through its writer's queue and
/// reads on the runtime's blocking pool; DynamoDB calls the SDK on the
/// caller's runtime). Every change is audited in the same atomic step as
/// the change itself: the entry names `actor` and the outcome (`ok`, or the
/// refusal's [`StoreError::code`]); a refusal changes nothing but the log.
///
/// Synchronous callers (command-line tools, tests) wait with
/// [`crate::block_on`].
pub trait Store: Send + Sync {
    /// The serial of `hw_id`: the existing one, or the next of the global
    /// sequence (status `factory_only`). Atomic: concurrent calls for the same
    /// `hw_id` get the same serial, and no serial is skipped or reused.
    fn provision<'a>(
        &'a self,
        hw_id: HwId,
        product: Option<&'a str>,
        actor: &'a str,
    ) -> StoreFuture<'a, Provisioned> {
        self.provision_under(hw_id, product, None, actor)
    }

    /// [`Store::provision`] within a production order: a new device only if
    /// the order admits it ([`Order::admits`]), counted against its
    /// quantity in the same atomic step; a known hardware ID gets its serial
    /// back and is not counted again. The device takes the order's product.
    fn provision_under<'a>(
        &'a self,
        hw_id: HwId,
        product: Option<&'a str>,
        order: Option<&'a str>,
        actor: &'a str,
    ) -> StoreFuture<'a, Provisioned>;

    /// Open a production order (unique name). Audited.
    fn open_order<'a>(&'a self, order: &'a Order, actor: &'a str) -> StoreFuture<'a, Order>;

    /// Every order, by name.
    fn orders(&self) -> StoreFuture<'_, Vec<Order>>;

    /// Mark a `factory_only` device `active` with its verified record's data.
    /// Idempotent for the same record; refused for a revoked device, another
    /// chip, or a different record once active.
    fn activate<'a>(
        &'a self,
        serial: Serial,
        activation: &'a Activation,
        actor: &'a str,
    ) -> StoreFuture<'a, Device>;

    /// Revoke a device (idempotent). A revoked hardware ID gets no serial
    /// again. The reason goes into the audit log.
    fn revoke<'a>(
        &'a self,
        serial: Serial,
        reason: &'a str,
        actor: &'a str,
    ) -> StoreFuture<'a, Device>;

    /// Store a new challenge.
    fn create_challenge<'a>(&'a self, challenge: &'a Challenge) -> StoreFuture<'a, ()>;

    /// Use a challenge: atomically marks it used, so of concurrent attempts
    /// exactly one gets it. An expired challenge is used up and refused.
    fn consume_challenge<'a>(
        &'a self,
        id: &'a str,
        now: i64,
    ) -> StoreFuture<'a, Result<Challenge, ChallengeRefusal>>;

    /// Append an entry to the service chain (chain 0) of the audit log;
    /// returns its sequence number.
    fn audit<'a>(&'a self, entry: &'a AuditEntry) -> StoreFuture<'a, u64>;

    /// Append an entry about the device `hw_id` (its own traffic, such as an
    /// authentication) to the chain that device's entries go to; returns its
    /// sequence number in that chain. A single-chain store appends to chain 0.
    fn audit_device<'a>(&'a self, hw_id: HwId, entry: &'a AuditEntry) -> StoreFuture<'a, u64> {
        let _ = hw_id;
        self.audit(entry)
    }

    /// The whole audit log: every chain, each in order.
    fn audit_log(&self) -> StoreFuture<'_, Vec<ChainedEntry>>;

    /// The head of every chain that has entries, by chain number (empty for
    /// an empty log).
    fn audit_heads(&self) -> StoreFuture<'_, Vec<ChainHead>>;

    /// The device with this serial, if any.
    fn device_by_serial(&self, serial: Serial) -> StoreFuture<'_, Option<Device>>;

    /// The device with this hardware ID, if any.
    fn device_by_hw_id(&self, hw_id: HwId) -> StoreFuture<'_, Option<Device>>;

    /// Register an API token by the SHA-256 of its text (the text itself is
    /// never stored), refused from `expires_at` (Unix seconds) on, if given.
    /// Names are unique. Audited as done by `actor`.
    fn add_token<'a>(
        &'a self,
        name: &'a str,
        role: Role,
        token_hash: &'a [u8; 32],
        expires_at: Option<i64>,
        actor: &'a str,
    ) -> StoreFuture<'a, TokenInfo> {
        self.add_token_for(name, role, token_hash, expires_at, None, actor)
    }

    /// [`Store::add_token`], the token bound to the production order named
    /// `order` (which must exist).
    fn add_token_for<'a>(
        &'a self,
        name: &'a str,
        role: Role,
        token_hash: &'a [u8; 32],
        expires_at: Option<i64>,
        order: Option<&'a str>,
        actor: &'a str,
    ) -> StoreFuture<'a, TokenInfo>;

    /// Revoke the token named `name` (idempotent): every later request with
    /// it is refused. Audited as done by `actor`.
    fn revoke_token<'a>(&'a self, name: &'a str, actor: &'a str) -> StoreFuture<'a, TokenInfo>;

    /// Every token, by name (revoked and expired ones too).
    fn tokens(&self) -> StoreFuture<'_, Vec<TokenInfo>>;

    /// The token whose text hashes to `token_hash`, if any, as stored now
    /// (read through to the store: a revocation counts from the next
    /// request on).
    fn token_by_hash<'a>(&'a self, token_hash: &'a [u8; 32]) -> StoreFuture<'a, Option<TokenInfo>>;

    /// Every device, by serial.
    fn devices(&self) -> StoreFuture<'_, Vec<Device>>;

    /// Keep an encrypted release under its name; `true` when it is new. The
    /// same image again changes nothing; another image under a name in use
    /// is refused ([`StoreError::NameTaken`]). Audited.
    fn put_release<'a>(&'a self, release: &'a Release, actor: &'a str) -> StoreFuture<'a, bool>;

    /// The release named `name`, if any.
    fn release<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Release>>;

    /// Keep the ENC TLV value of `release` wrapped for the device `serial`
    /// (its copy), replacing an earlier one: refused for an unknown release
    /// or device, a revoked device, or one without a key yet. Audited.
    fn put_wrapped_key<'a>(
        &'a self,
        release: &'a str,
        serial: Serial,
        wrapped: &'a [u8],
        actor: &'a str,
    ) -> StoreFuture<'a, ()>;

    /// The ENC TLV value of `release` wrapped for the device `serial`, if
    /// kept.
    fn wrapped_key<'a>(
        &'a self,
        release: &'a str,
        serial: Serial,
    ) -> StoreFuture<'a, Option<Vec<u8>>>;
}

/// Whether `device` may be given copies of releases: known, not revoked,
/// with a public key.
pub(crate) fn may_receive_copies(
    device: Option<Device>,
    serial: Serial,
) -> Result<Device, StoreError> {
    let device = device.ok_or(StoreError::UnknownSerial(serial))?;
    if device.status == crate::model::DeviceStatus::Revoked {
        return Err(StoreError::Revoked(device.hw_id));
    }
    if device.device_pubkey.is_none() {
        return Err(StoreError::NoDeviceKey(serial));
    }
    Ok(device)
}
