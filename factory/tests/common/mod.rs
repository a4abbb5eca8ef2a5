//! Helpers shared by the factory's integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use lambda::auth::{token_hash, BearerTokens};
use lambda::model::Role;
use lambda::{SqliteStore, Store};

pub const TOKEN: &str = "pvd_factory-test";
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");

/// A backend on a free port, running until the test ends.
pub struct LocalBackend {
    pub url: String,
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

/// A backend accepting `authorities`.
pub fn backend_with(authorities: Vec<firmware::P256PublicKey>) -> LocalBackend {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("reg.db")).unwrap());
    store
        .add_token("line-1", Role::Factory, &token_hash(TOKEN))
        .unwrap();
    let app = lambda::api::router(lambda::api::AppState {
        auth: Arc::new(BearerTokens::new(Arc::clone(&store))),
        store: Arc::clone(&store),
        authorities: Arc::new(authorities),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    LocalBackend {
        url,
        store,
        _dir: dir,
    }
}

/// A backend accepting the test authority (tests/data/records/authority.pem).
pub fn backend() -> LocalBackend {
    backend_with(
        lambda::config::authorities_from_files(
            &[format!("{DATA}records/authority.pub.pem").into()],
        )
        .unwrap(),
    )
}
