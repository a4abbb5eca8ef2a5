//! The provisioning backend's device registry.
//!
//! The factory asks for a serial per chip (`provision`): a known hardware ID
//! gets its existing serial, a new one the next value of one global sequence
//! starting at 1, atomically, with no gaps and no duplicates. Devices move
//! `factory_only` → `active` → `revoked`. Stores keep public keys and secret
//! hashes only.
//!
//! This crate holds the model, the (async) store trait with its SQLite and
//! DynamoDB implementations, the HTTP router (`api`), and the Lambda and
//! local-server entry points built on them.

pub mod api;
pub mod audit;
pub mod auth;
pub mod checkpoint;
pub mod config;
pub mod guard;
pub mod model;
pub mod release;
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
    StoreFuture,
};

/// Wait for `future` from synchronous code (the command-line tools, tests):
/// it runs on this thread, with a process-wide multi-threaded runtime
/// driving its I/O and timers. Not for use inside a runtime (it would block
/// a worker).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("lambda-block-on")
                .enable_all()
                .build()
                .unwrap_or_else(|e| {
                    // No runtime means no store at all: nothing can go on.
                    eprintln!("cannot start the async runtime: {e}");
                    std::process::exit(70)
                })
        })
        .block_on(future)
}

/// `.wait()`: [`block_on`] as a method, for synchronous callers of the
/// store (the command-line tools, tests).
pub trait Wait: std::future::Future + Sized {
    /// Run to completion on this thread.
    fn wait(self) -> Self::Output {
        block_on(self)
    }
}

impl<F: std::future::Future> Wait for F {}
