//! What every store must do, run on SQLite and on DynamoDB (moto_server,
//! through the real SDK): serials idempotent per hardware ID and one gap-free
//! sequence under concurrency (threads sharing a store, and separate stores
//! on one database), activation and revocation rules, single-use challenges,
//! tokens, and every change in one audit chain.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use lambda::Wait;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use firmware::record::HwId;
use lambda::audit::verify_chain;
use lambda::model::Role;
use lambda::{DeviceStatus, SqliteStore, Store, StoreError};

/// Opens stores on one database: each call a separate store (connection or
/// client) on the same data.
trait Backend: Sync {
    fn open(&self) -> Arc<dyn Store>;
}

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

impl Backend for Sqlite {
    fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.dir.path().join("reg.db")).unwrap())
    }
}

struct Dynamo {
    moto: common::Moto,
}

impl Dynamo {
    fn new() -> Self {
        Self {
            moto: common::Moto::start(),
        }
    }
}

impl Backend for Dynamo {
    fn open(&self) -> Arc<dyn Store> {
        let uri: lambda::config::StoreUri = self.moto.store_uri("t").parse().unwrap();
        uri.open().wait().unwrap()
    }
}

fn hw(i: u32) -> HwId {
    HwId::from_deviceid(i, 0x1234_5678)
}

fn same_chip_same_serial(b: &dyn Backend) {
    let store = b.open();
    let a = store
        .provision(hw(3), Some("sensor-v2"), "test")
        .wait()
        .unwrap();
    assert!(a.created);
    assert_eq!(a.device.serial, 1);
    assert_eq!(a.device.status, DeviceStatus::FactoryOnly);
    let again = store.provision(hw(3), None, "test").wait().unwrap();
    assert!(!again.created);
    assert_eq!(again.device, a.device);
    assert_eq!(
        store
            .provision(hw(4), None, "test")
            .wait()
            .unwrap()
            .device
            .serial,
        2
    );
    assert_eq!(
        store.device_by_serial(1).wait().unwrap().unwrap().hw_id,
        hw(3)
    );
    assert_eq!(
        store.device_by_hw_id(hw(4)).wait().unwrap().unwrap().serial,
        2
    );
    assert!(store.device_by_serial(99).wait().unwrap().is_none());
}

/// `threads` threads, each with the store `open` gives it, provision
/// `calls` times over `chips` hardware IDs; returns every (chip, serial) answer.
fn provision_concurrently(
    threads: u32,
    calls: u32,
    chips: u32,
    open: impl Fn(u32) -> Arc<dyn Store> + Sync,
) -> Vec<(HwId, u32)> {
    std::thread::scope(|s| {
        let open = &open;
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let store = open(t);
                    (0..calls)
                        .map(|i| {
                            let h = hw((i * 7 + t * 13) % chips);
                            (
                                h,
                                store
                                    .provision(h, None, "test")
                                    .wait()
                                    .unwrap()
                                    .device
                                    .serial,
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

fn check_allocation(results: Vec<(HwId, u32)>, chips: u32) {
    let mut by_chip: BTreeMap<HwId, BTreeSet<u32>> = BTreeMap::new();
    for (h, s) in results {
        by_chip.entry(h).or_default().insert(s);
    }
    assert_eq!(by_chip.len() as u32, chips);
    let serials: BTreeSet<u32> = by_chip
        .values()
        .map(|s| {
            assert_eq!(s.len(), 1, "a chip got more than one serial: {s:?}");
            *s.iter().next().unwrap()
        })
        .collect();
    assert_eq!(
        serials,
        (1..=chips).collect::<BTreeSet<_>>(),
        "serials must be exactly 1..={chips}"
    );
}

fn concurrent_threads_get_one_gap_free_sequence(
    b: &dyn Backend,
    threads: u32,
    calls: u32,
    chips: u32,
) {
    let store = b.open();
    let results = provision_concurrently(threads, calls, chips, |_| Arc::clone(&store));
    check_allocation(results, chips);
    assert_eq!(
        verify_chain(store.audit_log().wait().unwrap()),
        Ok(u64::from(threads * calls))
    );
}

fn separate_stores_agree_and_survive_reopening(
    b: &dyn Backend,
    threads: u32,
    calls: u32,
    chips: u32,
) {
    let results = provision_concurrently(threads, calls, chips, |_| b.open());
    check_allocation(results.clone(), chips);
    let reopened = b.open();
    for (h, serial) in results {
        assert_eq!(
            reopened.device_by_hw_id(h).wait().unwrap().unwrap().serial,
            serial
        );
    }
    assert_eq!(
        reopened
            .provision(hw(1000), None, "test")
            .wait()
            .unwrap()
            .device
            .serial,
        chips + 1
    );
    assert_eq!(
        verify_chain(reopened.audit_log().wait().unwrap()),
        Ok(u64::from(threads * calls) + 1)
    );
}

fn activation_is_idempotent_and_revocation_is_final(b: &dyn Backend) {
    use lambda::Activation;
    let store = b.open();
    let serial = store
        .provision(hw(3), None, "test")
        .wait()
        .unwrap()
        .device
        .serial;
    let act = Activation {
        hw_id: hw(3),
        device_pubkey: [4; 65],
        key_origin: firmware::record::KeyOrigin::Device,
        record_hash: [1; 32],
    };
    let active = store.activate(serial, &act, "test").wait().unwrap();
    assert_eq!(active.status, DeviceStatus::Active);
    assert_eq!(
        active.key_origin,
        Some(firmware::record::KeyOrigin::Device),
        "the key's origin is stored"
    );
    assert_eq!(
        store
            .device_by_serial(serial)
            .wait()
            .unwrap()
            .unwrap()
            .key_origin,
        Some(firmware::record::KeyOrigin::Device)
    );
    assert_eq!(
        store.activate(serial, &act, "test").wait().unwrap().status,
        DeviceStatus::Active,
        "same record again"
    );
    let other_record = Activation {
        record_hash: [2; 32],
        ..act.clone()
    };
    assert!(matches!(
        store.activate(serial, &other_record, "test").wait(),
        Err(StoreError::AlreadyActive(_))
    ));
    let other_chip = Activation {
        hw_id: hw(4),
        ..act.clone()
    };
    assert!(matches!(
        store.activate(serial, &other_chip, "test").wait(),
        Err(StoreError::HwIdMismatch { .. })
    ));
    assert!(matches!(
        store.activate(77, &act, "test").wait(),
        Err(StoreError::UnknownSerial(77))
    ));

    let revoked = store.revoke(serial, "lost", "test").wait().unwrap();
    assert_eq!(revoked.status, DeviceStatus::Revoked);
    assert_eq!(
        revoked.key_origin,
        Some(firmware::record::KeyOrigin::Device),
        "kept on revocation"
    );
    assert_eq!(
        store.revoke(serial, "lost", "test").wait().unwrap().status,
        DeviceStatus::Revoked
    );
    assert!(matches!(
        store.provision(hw(3), None, "test").wait(),
        Err(StoreError::Revoked(_))
    ));
    assert!(matches!(
        store.activate(serial, &act, "test").wait(),
        Err(StoreError::Revoked(_))
    ));
    assert!(matches!(
        store.revoke(77, "x", "test").wait(),
        Err(StoreError::UnknownSerial(77))
    ));
    // Every change and every refusal is in the log, in order.
    let log = store.audit_log().wait().unwrap();
    common::assert_log_is(
        &log,
        |e| (e.entry.action.clone(), e.entry.outcome.clone()),
        &[
            ("provision".into(), "ok".into()),
            ("activate".into(), "ok".into()),
            ("activate".into(), "ok".into()),
            ("activate".into(), "already_active".into()),
            ("activate".into(), "hw_id_mismatch".into()),
            ("activate".into(), "unknown_serial".into()),
            ("revoke".into(), "ok".into()),
            ("revoke".into(), "ok".into()),
            ("provision".into(), "revoked".into()),
            ("activate".into(), "revoked".into()),
            ("revoke".into(), "unknown_serial".into()),
        ],
    );
    assert!(log
        .iter()
        .any(|e| e.entry.subject == "serial:1 reason:lost" && e.entry.outcome == "ok"));
    assert_eq!(verify_chain(log), Ok(11));
}

fn tokens_are_kept_by_hash_with_unique_names(b: &dyn Backend) {
    let store = b.open();
    store
        .add_token("line-1", Role::Factory, &[1; 32], None, "operator")
        .wait()
        .unwrap();
    let until = lambda::unix_now() + 3600;
    let boss = store
        .add_token("boss", Role::Admin, &[2; 32], Some(until), "operator")
        .wait()
        .unwrap();
    assert_eq!((boss.expires_at, boss.revoked_at), (Some(until), None));
    assert!(matches!(
        store
            .add_token("line-1", Role::Admin, &[3; 32], None, "admin:boss")
            .wait(),
        Err(StoreError::NameTaken(_))
    ));
    let t = store.token_by_hash(&[1; 32]).wait().unwrap().unwrap();
    assert_eq!((t.name.as_str(), t.role), ("line-1", Role::Factory));
    let boss = store.token_by_hash(&[2; 32]).wait().unwrap().unwrap();
    assert_eq!(boss.role, Role::Admin);
    assert!(boss.usable_at(until - 1).is_ok());
    assert_eq!(boss.usable_at(until), Err("token_expired"));
    assert!(store.token_by_hash(&[3; 32]).wait().unwrap().is_none());

    // Revocation: seen by the next look-up, through any store on the data;
    // idempotent; an unknown name is refused.
    let revoked = store.revoke_token("line-1", "admin:boss").wait().unwrap();
    assert!(revoked.revoked_at.is_some());
    let other = b.open();
    assert_eq!(
        other
            .token_by_hash(&[1; 32])
            .wait()
            .unwrap()
            .unwrap()
            .usable_at(0),
        Err("token_revoked")
    );
    assert_eq!(
        other
            .revoke_token("line-1", "operator")
            .wait()
            .unwrap()
            .revoked_at,
        revoked.revoked_at
    );
    assert!(matches!(
        store.revoke_token("nobody", "operator").wait(),
        Err(StoreError::UnknownToken(_))
    ));
    let names: Vec<(String, bool)> = store
        .tokens()
        .wait()
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.revoked_at.is_some()))
        .collect();
    assert_eq!(
        names,
        [("boss".to_owned(), false), ("line-1".to_owned(), true)]
    );
    let log = store.audit_log().wait().unwrap();
    let seen: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e.entry.actor.as_str(),
                e.entry.action.as_str(),
                e.entry.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("operator", "token.add", "ok"),
            ("operator", "token.add", "ok"),
            ("admin:boss", "token.add", "name_taken"),
            ("admin:boss", "token.revoke", "ok"),
            ("operator", "token.revoke", "ok"),
            ("operator", "token.revoke", "unknown_token"),
        ]
    );
    assert!(log[1]
        .entry
        .subject
        .contains(&format!("expires_at:{until}")));
    verify_chain(log).unwrap();
}

#[test]
fn sqlite_audit_chain_detects_edits_removals_and_reordering() {
    use lambda::audit::{verify_chain, AuditEntry};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reg.db");
    let store = SqliteStore::open(&path).unwrap();
    for i in 1..=5 {
        let e = AuditEntry {
            actor: "factory-1".into(),
            action: "provision".into(),
            subject: format!("serial:{i}"),
            outcome: "ok".into(),
        };
        assert_eq!(store.audit(&e).wait().unwrap(), i);
    }
    assert_eq!(verify_chain(store.audit_log().wait().unwrap()), Ok(5));
    drop(store);

    let tamper = |sql: &str| {
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        let _ = std::fs::remove_file(dir.path().join("copy.db-wal"));
        let conn = rusqlite::Connection::open(&copy).unwrap();
        conn.execute_batch(sql).unwrap();
        drop(conn);
        let log = SqliteStore::open(&copy)
            .unwrap()
            .audit_log()
            .wait()
            .unwrap();
        verify_chain(log).unwrap_err()
    };
    let edited = tamper("UPDATE audit SET outcome = 'refused' WHERE seq = 3");
    assert_eq!((edited.seq, edited.problem), (3, "edited (hash mismatch)"));
    let removed = tamper("DELETE FROM audit WHERE seq = 2");
    assert_eq!(removed.seq, 2);
    let reordered = tamper(
        "UPDATE audit SET seq = -2 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = -2;",
    );
    assert_eq!(reordered.seq, 2);
}

#[test]
fn a_registry_from_before_key_origins_opens_and_keeps_its_devices() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // The devices table as it was: a device-secret hash, no key origin.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE devices (serial INTEGER PRIMARY KEY, hw_id TEXT NOT NULL UNIQUE, \
             product TEXT, status TEXT NOT NULL, created_at INTEGER NOT NULL, \
             updated_at INTEGER NOT NULL, device_pubkey BLOB, device_secret_hash BLOB, \
             record_hash BLOB); \
             CREATE TABLE serial_sequence (id INTEGER PRIMARY KEY CHECK (id = 1), next INTEGER NOT NULL); \
             INSERT INTO serial_sequence VALUES (1, 2); \
             INSERT INTO devices VALUES (1, '1234567800000003', NULL, 'active', 1, 1, NULL, NULL, NULL);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let d = store.device_by_serial(1).wait().unwrap().unwrap();
    assert_eq!((d.status, d.key_origin), (DeviceStatus::Active, None));
    let serial = store
        .provision(hw(9), None, "test")
        .wait()
        .unwrap()
        .device
        .serial;
    let act = lambda::Activation {
        hw_id: hw(9),
        device_pubkey: [4; 65],
        key_origin: firmware::record::KeyOrigin::Station,
        record_hash: [1; 32],
    };
    assert_eq!(
        store
            .activate(serial, &act, "test")
            .wait()
            .unwrap()
            .key_origin,
        Some(firmware::record::KeyOrigin::Station)
    );
}

fn a_challenge_is_used_once_even_under_concurrency(b: &dyn Backend) {
    use lambda::{Challenge, ChallengeRefusal};
    let store = b.open();
    let c = Challenge {
        id: "c-1".into(),
        serial: 1,
        nonce: [7; 32],
        expires_at: 2_000_000_000,
    };
    store.create_challenge(&c).wait().unwrap();
    // 32 concurrent verifies, half through other stores on the same data.
    let wins: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let store = Arc::clone(&store);
                s.spawn(move || {
                    let st = if i % 2 == 0 { store } else { b.open() };
                    match st.consume_challenge("c-1", 1_900_000_000).wait().unwrap() {
                        Ok(got) => {
                            assert_eq!(got.nonce, [7; 32]);
                            1
                        }
                        Err(refusal) => {
                            assert_eq!(refusal, ChallengeRefusal::Replayed);
                            0
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(wins, 1);
    assert_eq!(
        store.consume_challenge("nope", 0).wait().unwrap(),
        Err(ChallengeRefusal::Unknown)
    );
    let old = Challenge {
        id: "c-2".into(),
        serial: 1,
        nonce: [1; 32],
        expires_at: 100,
    };
    store.create_challenge(&old).wait().unwrap();
    assert_eq!(
        store.consume_challenge("c-2", 100).wait().unwrap(),
        Err(ChallengeRefusal::Expired)
    );
    assert_eq!(
        store.consume_challenge("c-2", 50).wait().unwrap(),
        Err(ChallengeRefusal::Replayed)
    );
}

/// The contract, instantiated for one backend.
fn orders_bound_what_a_factory_can_create(b: &dyn Backend) {
    use lambda::model::Order;
    let store = b.open();
    let now = lambda::unix_now();
    let listed: std::collections::BTreeSet<HwId> = (0..12).map(hw).collect();
    let order = Order {
        name: "po-7".into(),
        product: "sensor".into(),
        quantity: 5,
        used: 0,
        not_before: now - 60,
        not_after: now + 3600,
        allow: Some(listed),
        created_at: now,
    };
    store.open_order(&order, "operator").wait().unwrap();
    assert!(matches!(
        store.open_order(&order, "operator").wait(),
        Err(StoreError::NameTaken(_))
    ));
    let closed = Order {
        name: "po-old".into(),
        not_before: now - 7200,
        not_after: now - 3600,
        allow: None,
        ..order.clone()
    };
    store.open_order(&closed, "operator").wait().unwrap();
    // A token for an order that does not exist is refused.
    assert!(matches!(
        store
            .add_token_for("x", Role::Factory, &[9; 32], None, Some("nope"), "operator")
            .wait(),
        Err(StoreError::UnknownOrder(_))
    ));
    let t = store
        .add_token_for(
            "line-3",
            Role::Factory,
            &[8; 32],
            None,
            Some("po-7"),
            "operator",
        )
        .wait()
        .unwrap();
    assert_eq!(t.order.as_deref(), Some("po-7"));
    assert_eq!(
        store
            .token_by_hash(&[8; 32])
            .wait()
            .unwrap()
            .unwrap()
            .order
            .as_deref(),
        Some("po-7")
    );

    // Off the list, another product, a closed or unknown order: refused,
    // nothing counted.
    let refused = |hw_id, product, order| {
        store
            .provision_under(hw_id, product, Some(order), "factory:line-3")
            .wait()
    };
    assert!(matches!(
        refused(hw(99), None, "po-7"),
        Err(StoreError::NotOnAllowList(_))
    ));
    assert!(matches!(
        refused(hw(0), Some("other"), "po-7"),
        Err(StoreError::WrongProduct(_))
    ));
    assert!(matches!(
        refused(hw(0), None, "po-old"),
        Err(StoreError::OrderClosed(_))
    ));
    assert!(matches!(
        refused(hw(0), None, "po-none"),
        Err(StoreError::UnknownOrder(_))
    ));

    // Twelve listed chips, eight threads at once, a quantity of five: exactly
    // five new devices, of the order's product; the rest refused as exhausted.
    let results: Vec<Result<u32, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12u32)
            .map(|i| {
                let store = b.open();
                s.spawn(move || {
                    store
                        .provision_under(hw(i), None, Some("po-7"), "factory:line-3")
                        .wait()
                        .map(|p| p.device.serial)
                        .map_err(|e| e.code().to_owned())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let made: Vec<u32> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(made.len(), 5, "{results:?}");
    assert!(results
        .iter()
        .all(|r| r.as_ref().map_or_else(|e| e == "order_exhausted", |_| true)));
    let orders = store.orders().wait().unwrap();
    let po7 = orders.iter().find(|o| o.name == "po-7").unwrap();
    assert_eq!((po7.used, po7.quantity), (5, 5));
    // A chip already made asks again: its serial, not counted.
    let first = (0..12)
        .map(hw)
        .find(|h| store.device_by_hw_id(*h).wait().unwrap().is_some())
        .unwrap();
    let again = store
        .provision_under(first, None, Some("po-7"), "factory:line-3")
        .wait()
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.device.product.as_deref(), Some("sensor"));
    let log = store.audit_log().wait().unwrap();
    assert!(log
        .iter()
        .any(|e| e.entry.action == "order.open" && e.entry.outcome == "ok"));
    assert!(log
        .iter()
        .any(|e| e.entry.action == "provision" && e.entry.outcome == "order_exhausted"));
    verify_chain(log).unwrap();
}

fn releases_are_kept_once_and_copies_as_wrapped_keys(b: &dyn Backend) {
    use lambda::model::Release;
    use lambda::Activation;
    let store = b.open();
    // A release of 300 KiB: near what one DynamoDB item holds.
    let image: Vec<u8> = (0..300 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let r = Release::new("app-1.0.0", image.clone(), 1_700_000_000);
    assert!(store.put_release(&r, "station").wait().unwrap());
    assert!(
        !store.put_release(&r, "station").wait().unwrap(),
        "the same again"
    );
    let other = Release::new("app-1.0.0", vec![1, 2, 3], 1_700_000_000);
    assert!(matches!(
        store.put_release(&other, "station").wait(),
        Err(StoreError::NameTaken(_))
    ));
    assert_eq!(store.release("app-1.0.0").wait().unwrap(), Some(r.clone()));
    assert_eq!(store.release("nope").wait().unwrap(), None);

    let serial = store
        .provision(hw(7), None, "test")
        .wait()
        .unwrap()
        .device
        .serial;
    let wrapped = [9u8; 113];
    let refused = |release: &str, serial: u32| {
        store
            .put_wrapped_key(release, serial, &wrapped, "station")
            .wait()
    };
    assert!(matches!(
        refused("nope", serial),
        Err(StoreError::UnknownRelease(_))
    ));
    assert!(matches!(
        refused("app-1.0.0", 999),
        Err(StoreError::UnknownSerial(999))
    ));
    assert!(matches!(
        refused("app-1.0.0", serial),
        Err(StoreError::NoDeviceKey(_))
    ));
    let act = Activation {
        hw_id: hw(7),
        device_pubkey: [4; 65],
        key_origin: firmware::record::KeyOrigin::Device,
        record_hash: [1; 32],
    };
    store.activate(serial, &act, "test").wait().unwrap();
    store
        .put_wrapped_key("app-1.0.0", serial, &wrapped, "station")
        .wait()
        .unwrap();
    assert_eq!(
        store.wrapped_key("app-1.0.0", serial).wait().unwrap(),
        Some(wrapped.to_vec())
    );
    // A new wrap replaces the old one.
    store
        .put_wrapped_key("app-1.0.0", serial, &[8; 113], "station")
        .wait()
        .unwrap();
    assert_eq!(
        store.wrapped_key("app-1.0.0", serial).wait().unwrap(),
        Some(vec![8; 113])
    );
    assert_eq!(
        store.wrapped_key("app-1.0.0", serial + 1).wait().unwrap(),
        None
    );
    store.revoke(serial, "lost", "test").wait().unwrap();
    assert!(matches!(
        refused("app-1.0.0", serial),
        Err(StoreError::Revoked(_))
    ));
    let devices = store.devices().wait().unwrap();
    assert_eq!(
        devices.iter().map(|d| d.serial).collect::<Vec<_>>(),
        vec![serial]
    );

    let log = store.audit_log().wait().unwrap();
    for (action, outcome) in [
        ("release.put", "ok"),
        ("release.put", "name_taken"),
        ("release.wrap", "unknown_release"),
        ("release.wrap", "no_device_key"),
        ("release.wrap", "ok"),
        ("release.wrap", "revoked"),
    ] {
        assert!(
            log.iter()
                .any(|e| e.entry.action == action && e.entry.outcome == outcome),
            "{action} {outcome} not in the log"
        );
    }
    verify_chain(log).unwrap();
}

macro_rules! contract {
    ($backend:ident, $new:expr, $volume:expr) => {
        mod $backend {
            use super::*;

            #[test]
            fn same_chip_same_serial() {
                super::same_chip_same_serial(&$new);
            }

            #[test]
            fn concurrent_threads_get_one_gap_free_sequence() {
                let (threads, calls, chips) = $volume;
                super::concurrent_threads_get_one_gap_free_sequence(&$new, threads, calls, chips);
            }

            #[test]
            fn separate_stores_agree_and_survive_reopening() {
                let (threads, calls, chips) = $volume;
                super::separate_stores_agree_and_survive_reopening(
                    &$new,
                    threads / 4,
                    calls,
                    chips / 2,
                );
            }

            #[test]
            fn activation_is_idempotent_and_revocation_is_final() {
                super::activation_is_idempotent_and_revocation_is_final(&$new);
            }

            #[test]
            fn a_challenge_is_used_once_even_under_concurrency() {
                super::a_challenge_is_used_once_even_under_concurrency(&$new);
            }

            #[test]
            fn tokens_are_kept_by_hash_with_unique_names() {
                super::tokens_are_kept_by_hash_with_unique_names(&$new);
            }

            #[test]
            fn orders_bound_what_a_factory_can_create() {
                super::orders_bound_what_a_factory_can_create(&$new);
            }

            #[test]
            fn releases_are_kept_once_and_copies_as_wrapped_keys() {
                super::releases_are_kept_once_and_copies_as_wrapped_keys(&$new);
            }
        }
    };
}

contract!(sqlite, Sqlite::new(), (16, 200, 100));
// moto_server handles one request at a time; the same races at lower volume.
contract!(dynamodb, Dynamo::new(), (8, 25, 40));
