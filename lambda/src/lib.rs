//! The provisioning backend's device registry.
//!
//! The factory asks for a serial per chip (`provision`): a known hardware ID
//! gets its existing serial, a new one the next value of one global sequence
//! starting at 1, atomically, with no gaps and no duplicates. Devices move
//! `factory_only` → `active` → `revoked`. Stores keep public keys and secret
//! hashes only.
//!
//! This crate holds the model and the store trait with its SQLite
//! implementation; the HTTP router, the Lambda and local-server entry points
//! and the DynamoDB store build on it (issue 5).

pub mod api;
pub mod audit;
pub mod auth;
pub mod checkpoint;
pub mod config;
pub mod guard;
pub mod model;
pub mod store;
pub mod tls;

pub use model::{Device, DeviceStatus, Serial};

/// Now, in Unix seconds (the registry's one clock).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
pub use store::{
    sqlite::SqliteStore, Activation, Challenge, ChallengeRefusal, Provisioned, Store, StoreError,
};
