//! The embedded store: SQLite in WAL mode with `synchronous=FULL`, so an
//! answered allocation survives a crash. Allocation runs in one `IMMEDIATE`
//! transaction: look up the hardware ID, else take the next serial from the
//! one-row sequence and insert the device.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use firmware::record::HwId;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{Activation, Challenge, ChallengeRefusal, Provisioned, Store, StoreError};
use crate::audit::{entry_hash, AuditEntry, ChainedEntry};
use crate::model::{Device, DeviceStatus, Serial};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS serial_sequence (id INTEGER PRIMARY KEY CHECK (id = 1), next INTEGER NOT NULL);
INSERT OR IGNORE INTO serial_sequence (id, next) VALUES (1, 1);
CREATE TABLE IF NOT EXISTS devices (
    serial INTEGER PRIMARY KEY,
    hw_id TEXT NOT NULL UNIQUE,
    product TEXT,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    device_pubkey BLOB,
    device_secret_hash BLOB,
    record_hash BLOB
);
CREATE TABLE IF NOT EXISTS challenges (
    id TEXT PRIMARY KEY,
    serial INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
";

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A registry in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

/// A device row as read, before its fields are checked.
struct RawDevice {
    hw_id: String,
    serial: u32,
    product: Option<String>,
    status: String,
    created_at: i64,
    updated_at: i64,
    device_pubkey: Option<Vec<u8>>,
}

fn row_to_device(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawDevice> {
    Ok(RawDevice {
        hw_id: row.get(0)?,
        serial: row.get(1)?,
        product: row.get(2)?,
        status: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
        device_pubkey: row.get(6)?,
    })
}

fn device(raw: RawDevice) -> Result<Device, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(what.to_owned());
    Ok(Device {
        hw_id: HwId::parse_hex(&raw.hw_id).ok_or_else(|| corrupt("hw_id"))?,
        serial: raw.serial,
        product: raw.product,
        status: DeviceStatus::parse(&raw.status).ok_or_else(|| corrupt("status"))?,
        created_at: raw.created_at,
        updated_at: raw.updated_at,
        device_pubkey: raw
            .device_pubkey
            .map(|k| <[u8; 65]>::try_from(k.as_slice()).map_err(|_| corrupt("device_pubkey")))
            .transpose()?,
    })
}

const SELECT: &str =
    "SELECT hw_id, serial, product, status, created_at, updated_at, device_pubkey FROM devices";

impl SqliteStore {
    /// Open (creating if needed) the registry at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn find(conn: &Connection, hw_id: HwId) -> Result<Option<Device>, StoreError> {
        conn.query_row(
            &format!("{SELECT} WHERE hw_id = ?1"),
            [hw_id.to_string()],
            row_to_device,
        )
        .optional()
        .map_err(db)?
        .map(device)
        .transpose()
    }
}

impl Store for SqliteStore {
    fn provision(&self, hw_id: HwId, product: Option<&str>) -> Result<Provisioned, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        if let Some(existing) = Self::find(&tx, hw_id)? {
            if existing.status == DeviceStatus::Revoked {
                return Err(StoreError::Revoked(hw_id));
            }
            return Ok(Provisioned {
                device: existing,
                created: false,
            });
        }
        let next: i64 = tx
            .query_row("SELECT next FROM serial_sequence WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(db)?;
        let serial = Serial::try_from(next).map_err(|_| StoreError::SerialsExhausted)?;
        tx.execute(
            "UPDATE serial_sequence SET next = next + 1 WHERE id = 1",
            [],
        )
        .map_err(db)?;
        let t = now();
        tx.execute(
            "INSERT INTO devices (serial, hw_id, product, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![serial, hw_id.to_string(), product, DeviceStatus::FactoryOnly.as_str(), t],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        let device = Device {
            hw_id,
            serial,
            product: product.map(str::to_owned),
            status: DeviceStatus::FactoryOnly,
            created_at: t,
            updated_at: t,
            device_pubkey: None,
        };
        Ok(Provisioned {
            device,
            created: true,
        })
    }

    fn activate(&self, serial: Serial, a: &Activation) -> Result<Device, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let row: Option<(String, String, Option<Vec<u8>>)> = tx
            .query_row(
                "SELECT hw_id, status, record_hash FROM devices WHERE serial = ?1",
                [serial],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db)?;
        let (hw, status, record_hash) = row.ok_or(StoreError::UnknownSerial(serial))?;
        let registered =
            HwId::parse_hex(&hw).ok_or_else(|| StoreError::Corrupt(format!("hw_id {hw:?}")))?;
        if registered != a.hw_id {
            return Err(StoreError::HwIdMismatch {
                serial,
                registered,
                given: a.hw_id,
            });
        }
        match DeviceStatus::parse(&status) {
            Some(DeviceStatus::Revoked) => return Err(StoreError::Revoked(registered)),
            Some(DeviceStatus::Active) if record_hash.as_deref() == Some(&a.record_hash[..]) => {}
            Some(DeviceStatus::Active) => return Err(StoreError::AlreadyActive(serial)),
            Some(DeviceStatus::FactoryOnly) => {
                tx.execute(
                    "UPDATE devices SET status = ?2, device_pubkey = ?3, device_secret_hash = ?4, record_hash = ?5, updated_at = ?6 WHERE serial = ?1",
                    params![
                        serial,
                        DeviceStatus::Active.as_str(),
                        &a.device_pubkey[..],
                        a.device_secret_hash.as_ref().map(|h| &h[..]),
                        &a.record_hash[..],
                        now()
                    ],
                )
                .map_err(db)?;
            }
            None => return Err(StoreError::Corrupt(format!("status {status:?}"))),
        }
        tx.commit().map_err(db)?;
        drop(conn);
        self.device_by_serial(serial)?
            .ok_or(StoreError::UnknownSerial(serial))
    }

    fn revoke(&self, serial: Serial) -> Result<Device, StoreError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE devices SET status = ?2, updated_at = ?3 WHERE serial = ?1",
                params![serial, DeviceStatus::Revoked.as_str(), now()],
            )
            .map_err(db)?;
        if changed == 0 {
            return Err(StoreError::UnknownSerial(serial));
        }
        self.device_by_serial(serial)?
            .ok_or(StoreError::UnknownSerial(serial))
    }

    fn create_challenge(&self, c: &Challenge) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO challenges (id, serial, nonce, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![c.id, c.serial, &c.nonce[..], c.expires_at],
            )
            .map_err(db)?;
        Ok(())
    }

    fn consume_challenge(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Result<Challenge, ChallengeRefusal>, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let row: Option<(u32, Vec<u8>, i64, i64)> = tx
            .query_row(
                "SELECT serial, nonce, expires_at, used FROM challenges WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(db)?;
        let Some((serial, nonce, expires_at, used)) = row else {
            return Ok(Err(ChallengeRefusal::Unknown));
        };
        if used != 0 {
            return Ok(Err(ChallengeRefusal::Replayed));
        }
        tx.execute("UPDATE challenges SET used = 1 WHERE id = ?1", [id])
            .map_err(db)?;
        tx.commit().map_err(db)?;
        if now >= expires_at {
            return Ok(Err(ChallengeRefusal::Expired));
        }
        let nonce: [u8; 32] = nonce
            .try_into()
            .map_err(|_| StoreError::Corrupt("nonce length".into()))?;
        Ok(Ok(Challenge {
            id: id.to_owned(),
            serial,
            nonce,
            expires_at,
        }))
    }

    fn audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let last: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        let (seq, prev) = match last {
            None => (1u64, [0u8; 32]),
            Some((s, h)) => {
                let prev: [u8; 32] = h
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("audit hash length".into()))?;
                (s as u64 + 1, prev)
            }
        };
        let time = now();
        let hash = entry_hash(&prev, seq, time, entry);
        tx.execute(
            "INSERT INTO audit (seq, time, actor, action, subject, outcome, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![seq as i64, time, entry.actor, entry.action, entry.subject, entry.outcome, &prev[..], &hash[..]],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(seq)
    }

    fn audit_log(&self) -> Result<Vec<ChainedEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT seq, time, actor, action, subject, outcome, prev_hash, hash FROM audit ORDER BY rowid")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    AuditEntry {
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        subject: r.get(4)?,
                        outcome: r.get(5)?,
                    },
                    r.get::<_, Vec<u8>>(6)?,
                    r.get::<_, Vec<u8>>(7)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, time, entry, prev, hash) = row.map_err(db)?;
            let bad = |_| StoreError::Corrupt("audit hash length".into());
            out.push(ChainedEntry {
                seq: seq as u64,
                time,
                entry,
                prev_hash: prev.try_into().map_err(bad)?,
                hash: hash.try_into().map_err(bad)?,
            });
        }
        Ok(out)
    }

    fn device_by_serial(&self, serial: Serial) -> Result<Option<Device>, StoreError> {
        self.conn()
            .query_row(
                &format!("{SELECT} WHERE serial = ?1"),
                [serial],
                row_to_device,
            )
            .optional()
            .map_err(db)?
            .map(device)
            .transpose()
    }

    fn device_by_hw_id(&self, hw_id: HwId) -> Result<Option<Device>, StoreError> {
        Self::find(&self.conn(), hw_id)
    }
}
