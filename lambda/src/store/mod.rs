//! Where devices are kept: one trait, so the same handlers run on SQLite
//! (local server, tests) and DynamoDB (AWS).

pub mod dynamodb;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use firmware::record::{HwId, KeyOrigin};

use crate::audit::{AuditEntry, ChainHead, ChainedEntry};
use crate::model::{Device, Order, Role, Serial, TokenInfo};

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

/// A store operation for async callers.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// A device registry. Every change is audited in the same atomic step as
/// the change itself: the entry names `actor` and the outcome (`ok`, or the
/// refusal's [`StoreError::code`]); a refusal changes nothing but the log.
pub trait Store: Send + Sync {
    /// The serial of `hw_id`: the existing one, or the next of the global
    /// sequence (status `factory_only`). Atomic: concurrent calls for the same
    /// `hw_id` get the same serial, and no serial is skipped or reused.
    fn provision(
        &self,
        hw_id: HwId,
        product: Option<&str>,
        actor: &str,
    ) -> Result<Provisioned, StoreError> {
        self.provision_under(hw_id, product, None, actor)
    }

    /// [`Store::provision`] within a production order: a new device only if
    /// the order admits it ([`Order::admits`]), counted against its
    /// quantity in the same atomic step; a known hardware ID gets its serial
    /// back and is not counted again. The device takes the order's product.
    fn provision_under(
        &self,
        hw_id: HwId,
        product: Option<&str>,
        order: Option<&str>,
        actor: &str,
    ) -> Result<Provisioned, StoreError>;

    /// Open a production order (unique name). Audited.
    fn open_order(&self, order: &Order, actor: &str) -> Result<Order, StoreError>;

    /// Every order, by name.
    fn orders(&self) -> Result<Vec<Order>, StoreError>;

    /// [`Store::provision`] for async callers (the API's hot path). The
    /// default runs it on the runtime's blocking pool; a store that can wait
    /// for its answer without a thread overrides it.
    fn provision_async(
        self: Arc<Self>,
        hw_id: HwId,
        product: Option<String>,
        order: Option<String>,
        actor: String,
    ) -> BoxFuture<Provisioned>
    where
        Self: 'static,
    {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                self.provision_under(hw_id, product.as_deref(), order.as_deref(), &actor)
            })
            .await
            .map_err(|_| StoreError::Database("worker failed".into()))?
        })
    }

    /// Mark a `factory_only` device `active` with its verified record's data.
    /// Idempotent for the same record; refused for a revoked device, another
    /// chip, or a different record once active.
    fn activate(
        &self,
        serial: Serial,
        activation: &Activation,
        actor: &str,
    ) -> Result<Device, StoreError>;

    /// Revoke a device (idempotent). A revoked hardware ID gets no serial
    /// again. The reason goes into the audit log.
    fn revoke(&self, serial: Serial, reason: &str, actor: &str) -> Result<Device, StoreError>;

    /// Store a new challenge.
    fn create_challenge(&self, challenge: &Challenge) -> Result<(), StoreError>;

    /// Use a challenge: atomically marks it used, so of concurrent attempts
    /// exactly one gets it. An expired challenge is used up and refused.
    fn consume_challenge(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Result<Challenge, ChallengeRefusal>, StoreError>;

    /// Append an entry to the service chain (chain 0) of the audit log;
    /// returns its sequence number.
    fn audit(&self, entry: &AuditEntry) -> Result<u64, StoreError>;

    /// Append an entry about the device `hw_id` (its own traffic, such as an
    /// authentication) to the chain that device's entries go to; returns its
    /// sequence number in that chain. A single-chain store appends to chain 0.
    fn audit_device(&self, hw_id: HwId, entry: &AuditEntry) -> Result<u64, StoreError> {
        let _ = hw_id;
        self.audit(entry)
    }

    /// The whole audit log: every chain, each in order.
    fn audit_log(&self) -> Result<Vec<ChainedEntry>, StoreError>;

    /// The head of every chain that has entries, by chain number (empty for
    /// an empty log).
    fn audit_heads(&self) -> Result<Vec<ChainHead>, StoreError>;

    /// The device with this serial, if any.
    fn device_by_serial(&self, serial: Serial) -> Result<Option<Device>, StoreError>;

    /// The device with this hardware ID, if any.
    fn device_by_hw_id(&self, hw_id: HwId) -> Result<Option<Device>, StoreError>;

    /// Register an API token by the SHA-256 of its text (the text itself is
    /// never stored), refused from `expires_at` (Unix seconds) on, if given.
    /// Names are unique. Audited as done by `actor`.
    fn add_token(
        &self,
        name: &str,
        role: Role,
        token_hash: &[u8; 32],
        expires_at: Option<i64>,
        actor: &str,
    ) -> Result<TokenInfo, StoreError> {
        self.add_token_for(name, role, token_hash, expires_at, None, actor)
    }

    /// [`Store::add_token`], the token bound to the production order named
    /// `order` (which must exist).
    fn add_token_for(
        &self,
        name: &str,
        role: Role,
        token_hash: &[u8; 32],
        expires_at: Option<i64>,
        order: Option<&str>,
        actor: &str,
    ) -> Result<TokenInfo, StoreError>;

    /// Revoke the token named `name` (idempotent): every later request with
    /// it is refused. Audited as done by `actor`.
    fn revoke_token(&self, name: &str, actor: &str) -> Result<TokenInfo, StoreError>;

    /// Every token, by name (revoked and expired ones too).
    fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError>;

    /// The token whose text hashes to `token_hash`, if any, as stored now
    /// (read through to the store: a revocation counts from the next
    /// request on).
    fn token_by_hash(&self, token_hash: &[u8; 32]) -> Result<Option<TokenInfo>, StoreError>;
}
