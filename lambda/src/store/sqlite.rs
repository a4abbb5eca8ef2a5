//! The embedded store: SQLite in WAL mode with `synchronous=FULL`, so an
//! answered change survives a crash.
//!
//! Every change goes through one writer thread that commits in groups: it
//! takes all the changes waiting, runs each in its own savepoint inside one
//! `IMMEDIATE` transaction (a change that hits a database error is rolled
//! back alone) and answers them after the single durable commit. Allocation
//! looks up the hardware ID, else takes the next serial from the one-row
//! sequence and inserts the device, and appends its audit entry, all in that
//! transaction. Reads use a pool of separate connections (WAL readers do not
//! wait for the writer). Several stores (or processes) may share one file:
//! each group re-reads the sequence and the audit head inside its
//! transaction.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::sync::Mutex;

use firmware::record::{HwId, KeyOrigin};
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    may_receive_copies, Activation, Challenge, ChallengeRefusal, Provisioned, Store, StoreError,
    StoreFuture,
};
use crate::audit::{entry_hash, AuditEntry, ChainHead, ChainedEntry};
use crate::model::{Device, DeviceStatus, Order, Release, Role, Serial, TokenInfo};

/// Most changes committed together.
const MAX_GROUP: usize = 512;

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
    record_hash BLOB,
    key_origin TEXT
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
CREATE INDEX IF NOT EXISTS challenges_expiry ON challenges (expires_at);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash BLOB PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    order_name TEXT
);
CREATE TABLE IF NOT EXISTS releases (
    name TEXT PRIMARY KEY,
    image BLOB NOT NULL,
    sha256 BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS wrapped_keys (
    release TEXT NOT NULL,
    serial INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (release, serial)
);
CREATE TABLE IF NOT EXISTS orders (
    name TEXT PRIMARY KEY,
    product TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    allow TEXT,
    created_at INTEGER NOT NULL
);
";

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

use crate::unix_now as now;

/// A registry in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    path: Arc<Path>,
    writer: Mutex<Option<Sender<Box<dyn Job>>>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer after the changes already queued;
        // waiting for it closes its connection (and checkpoints the WAL).
        self.writer
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
    }
}

/// The head of the audit chain, as the writer tracks it within a group.
#[derive(Debug, Clone, Copy)]
struct Head {
    seq: u64,
    hash: [u8; 32],
}

/// One change waiting for the writer.
trait Job: Send {
    /// Run inside the group's transaction; false when it must be rolled back.
    fn run(&mut self, conn: &Connection, head: &mut Head) -> bool;
    /// Answer the caller once the group's commit is known.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

/// Where a change's answer goes: a waiting thread or a waiting task.
type Reply<T> = Box<dyn FnOnce(Result<T, StoreError>) + Send>;

/// The database result of a change: `Err` is a database failure (the change
/// is rolled back); `Ok` carries the answer, which may be a refusal.
type Outcome<T> = Result<Result<T, StoreError>, StoreError>;

struct TypedJob<T, F> {
    work: Option<F>,
    answer: Option<Result<T, StoreError>>,
    reply: Option<Reply<T>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection, &mut Head) -> Outcome<T> + Send,
{
    fn run(&mut self, conn: &Connection, head: &mut Head) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        match work(conn, head) {
            Ok(answer) => {
                self.answer = Some(answer);
                true
            }
            Err(e) => {
                self.answer = Some(Err(e));
                false
            }
        }
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (commit, self.answer) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(a)) => a,
            (Ok(()), None) => Err(StoreError::Database("change not run".into())),
        };
        if let Some(reply) = self.reply {
            reply(answer);
        }
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(db)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    Ok(conn)
}

fn init(conn: &Connection) -> Result<(), StoreError> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(db)?;
    if !mode.eq_ignore_ascii_case("wal") {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
    }
    conn.execute_batch(SCHEMA).map_err(db)?;
    // Registries made before key origins were stored gain the column (their
    // devices' origin is unknown: NULL).
    let has_origin: bool = conn
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('devices') WHERE name = 'key_origin'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(db)?
        > 0;
    if !has_origin {
        conn.execute_batch("ALTER TABLE devices ADD COLUMN key_origin TEXT")
            .map_err(db)?;
    }
    // Registries from before token expiry and revocation.
    for column in ["expires_at", "revoked_at", "order_name"] {
        let has: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('tokens') WHERE name = ?1",
                [column],
                |r| r.get::<_, i64>(0),
            )
            .map_err(db)?
            > 0;
        if !has {
            let kind = if column == "order_name" {
                "TEXT"
            } else {
                "INTEGER"
            };
            conn.execute_batch(&format!("ALTER TABLE tokens ADD COLUMN {column} {kind}"))
                .map_err(db)?;
        }
    }
    Ok(())
}

const TOKEN_COLUMNS: &str = "name, role, created_at, expires_at, revoked_at, order_name";

/// A `tokens` row as [`TOKEN_COLUMNS`] selects it.
type TokenRow = (
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn token_info(
    (name, role, created_at, expires_at, revoked_at, order): TokenRow,
) -> Result<TokenInfo, StoreError> {
    let role =
        Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("token role {role:?}")))?;
    Ok(TokenInfo {
        name,
        role,
        created_at,
        expires_at,
        revoked_at,
        order,
    })
}

fn order_named(conn: &Connection, name: &str) -> Result<Option<Order>, StoreError> {
    conn.prepare_cached(
        "SELECT name, product, quantity, used, not_before, not_after, allow, created_at \
         FROM orders WHERE name = ?1",
    )
    .map_err(db)?
    .query_row([name], order_row)
    .optional()
    .map_err(db)?
    .transpose()
}

fn order_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Order, StoreError>> {
    let allow: Option<String> = r.get(6)?;
    let allow = match allow {
        None => Ok(None),
        Some(text) => serde_json::from_str::<Vec<String>>(&text)
            .map_err(|e| StoreError::Corrupt(format!("order allow list: {e}")))
            .and_then(|ids| {
                ids.iter()
                    .map(|h| {
                        HwId::parse_hex(h)
                            .ok_or_else(|| StoreError::Corrupt(format!("order hw_id {h:?}")))
                    })
                    .collect::<Result<_, _>>()
                    .map(Some)
            }),
    };
    Ok(allow.map(|allow| Order {
        name: r.get(0).unwrap_or_default(),
        product: r.get(1).unwrap_or_default(),
        quantity: r.get(2).unwrap_or_default(),
        used: r.get(3).unwrap_or_default(),
        not_before: r.get(4).unwrap_or_default(),
        not_after: r.get(5).unwrap_or_default(),
        allow,
        created_at: r.get(7).unwrap_or_default(),
    }))
}

fn token_named(conn: &Connection, name: &str) -> Result<Option<TokenInfo>, StoreError> {
    conn.query_row(
        &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE name = ?1"),
        [name],
        token_row,
    )
    .optional()
    .map_err(db)?
    .map(token_info)
    .transpose()
}

fn read_head(conn: &Connection) -> Result<Head, StoreError> {
    let last: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    Ok(match last {
        None => Head {
            seq: 0,
            hash: [0; 32],
        },
        Some((seq, hash)) => Head {
            seq: seq as u64,
            hash: hash
                .try_into()
                .map_err(|_| StoreError::Corrupt("audit hash length".into()))?,
        },
    })
}

/// Append `entry` after `head` and advance it.
fn append_audit(conn: &Connection, head: &mut Head, entry: &AuditEntry) -> Result<u64, StoreError> {
    let entry = &entry.escaped();
    let seq = head.seq + 1;
    let time = now();
    let hash = entry_hash(&head.hash, seq, time, entry);
    conn.prepare_cached(
        "INSERT INTO audit (seq, time, actor, action, subject, outcome, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .map_err(db)?
    .execute(params![
        seq as i64,
        time,
        entry.actor,
        entry.action,
        entry.subject,
        entry.outcome,
        &head.hash[..],
        &hash[..]
    ])
    .map_err(db)?;
    *head = Head { seq, hash };
    Ok(seq)
}

/// Audit an answer: outcome `ok`, or the refusal's code.
fn audit_answer<T>(
    conn: &Connection,
    head: &mut Head,
    actor: &str,
    action: &str,
    subject: String,
    answer: Result<T, StoreError>,
) -> Outcome<T> {
    let outcome = match &answer {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    append_audit(
        conn,
        head,
        &AuditEntry {
            actor: actor.to_owned(),
            action: action.to_owned(),
            subject,
            outcome: outcome.to_owned(),
        },
    )?;
    Ok(answer)
}

/// The writer thread: group commit until every sender is gone.
fn write_loop(conn: Connection, jobs: Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        let commit = run_group(&conn, &mut group);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for job in group {
            job.finish(commit.clone());
        }
    }
}

fn run_group(conn: &Connection, group: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
    let mut head = read_head(conn)?;
    for job in group.iter_mut() {
        conn.execute_batch("SAVEPOINT change").map_err(db)?;
        let saved = head;
        if job.run(conn, &mut head) {
            conn.execute_batch("RELEASE change").map_err(db)?;
        } else {
            head = saved;
            conn.execute_batch("ROLLBACK TO change; RELEASE change")
                .map_err(db)?;
        }
    }
    conn.execute_batch("COMMIT").map_err(db)
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
    key_origin: Option<String>,
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
        key_origin: row.get(7)?,
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
        key_origin: raw
            .key_origin
            .map(|o| KeyOrigin::parse(&o).ok_or_else(|| corrupt("key_origin")))
            .transpose()?,
    })
}

const SELECT: &str =
    "SELECT hw_id, serial, product, status, created_at, updated_at, device_pubkey, key_origin FROM devices";

impl SqliteStore {
    /// Open (creating if needed) the registry at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_connection(path)?;
        // Switching to WAL and creating the schema can meet another opener
        // of a new file mid-way; SQLite then answers "locked" at once.
        let mut attempt = 0;
        while let Err(e) = init(&conn) {
            attempt += 1;
            if attempt > 100 {
                return Err(e);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let (send, jobs) = mpsc::channel::<Box<dyn Job>>();
        let writer_thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(conn, jobs))
            .map_err(|e| StoreError::Database(format!("writer thread: {e}")))?;
        Ok(Self {
            path: Arc::from(path),
            writer: Mutex::new(Some(send)),
            writer_thread: Some(writer_thread),
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Queue a change for the writer thread; `reply` gets its durable answer.
    fn submit<T, F>(&self, work: F, reply: Reply<T>) -> Result<(), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Head) -> Outcome<T> + Send + 'static,
    {
        let job = Box::new(TypedJob {
            work: Some(work),
            answer: None,
            reply: Some(reply),
        });
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .ok_or_else(|| StoreError::Database("store closed".into()))?
            .send(job)
            .map_err(|_| StoreError::Database("writer thread stopped".into()))
    }

    /// Run a change on the writer thread; the future waits for its durable
    /// answer without holding a thread.
    fn write<T, F>(&self, work: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Head) -> Outcome<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let queued = self.submit(
            work,
            Box::new(move |a| {
                let _ = reply.send(a);
            }),
        );
        Box::pin(async move {
            queued?;
            answer
                .await
                .map_err(|_| StoreError::Database("writer thread stopped".into()))?
        })
    }

    /// Run a query on a pooled read connection, on the runtime's blocking
    /// pool (inline when polled outside a Tokio runtime).
    fn read<T, F>(&self, f: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (path, readers) = (Arc::clone(&self.path), Arc::clone(&self.readers));
        let query = move || {
            let pooled = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&path)?,
            };
            let result = f(&conn);
            readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            result
        };
        Box::pin(async move {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => rt
                    .spawn_blocking(query)
                    .await
                    .map_err(|_| StoreError::Database("read task failed".into()))?,
                Err(_) => query(),
            }
        })
    }

    fn find(conn: &Connection, hw_id: HwId) -> Result<Option<Device>, StoreError> {
        conn.prepare_cached(&format!("{SELECT} WHERE hw_id = ?1"))
            .map_err(db)?
            .query_row([hw_id.to_string()], row_to_device)
            .optional()
            .map_err(db)?
            .map(device)
            .transpose()
    }

    fn find_serial(conn: &Connection, serial: Serial) -> Result<Option<Device>, StoreError> {
        conn.prepare_cached(&format!("{SELECT} WHERE serial = ?1"))
            .map_err(db)?
            .query_row([serial], row_to_device)
            .optional()
            .map_err(db)?
            .map(device)
            .transpose()
    }
}

fn provision_in(
    conn: &Connection,
    hw_id: HwId,
    product: Option<&str>,
    order: Option<&str>,
) -> Outcome<Provisioned> {
    if let Some(existing) = SqliteStore::find(conn, hw_id)? {
        if existing.status == DeviceStatus::Revoked {
            return Ok(Err(StoreError::Revoked(hw_id)));
        }
        return Ok(Ok(Provisioned {
            device: existing,
            created: false,
        }));
    }
    // Within an order: admitted, and counted in this same transaction.
    let order_product;
    let product = match order {
        None => product,
        Some(name) => {
            let Some(o) = order_named(conn, name)? else {
                return Ok(Err(StoreError::UnknownOrder(name.to_owned())));
            };
            if let Err(refusal) = o.admits(hw_id, product, now()) {
                return Ok(Err(refusal));
            }
            conn.prepare_cached("UPDATE orders SET used = used + 1 WHERE name = ?1")
                .map_err(db)?
                .execute([name])
                .map_err(db)?;
            order_product = o.product;
            Some(order_product.as_str())
        }
    };
    let next: i64 = conn
        .prepare_cached("SELECT next FROM serial_sequence WHERE id = 1")
        .map_err(db)?
        .query_row([], |r| r.get(0))
        .map_err(db)?;
    let Ok(serial) = Serial::try_from(next) else {
        return Ok(Err(StoreError::SerialsExhausted));
    };
    conn.prepare_cached("UPDATE serial_sequence SET next = next + 1 WHERE id = 1")
        .map_err(db)?
        .execute([])
        .map_err(db)?;
    let t = now();
    conn.prepare_cached(
        "INSERT INTO devices (serial, hw_id, product, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )
    .map_err(db)?
    .execute(params![serial, hw_id.to_string(), product, DeviceStatus::FactoryOnly.as_str(), t])
    .map_err(db)?;
    Ok(Ok(Provisioned {
        device: Device::allocated(hw_id, serial, product, t),
        created: true,
    }))
}

/// Provisioning as a change for the writer: allocate or find, and audit.
fn provision_change(
    hw_id: HwId,
    product: Option<String>,
    order: Option<String>,
    actor: String,
) -> impl FnOnce(&Connection, &mut Head) -> Outcome<Provisioned> + Send + 'static {
    move |conn, head| {
        let answer = provision_in(conn, hw_id, product.as_deref(), order.as_deref())?;
        let mut subject = match &answer {
            Ok(p) => format!("hw_id:{hw_id} serial:{}", p.device.serial),
            Err(_) => format!("hw_id:{hw_id}"),
        };
        if let Some(o) = &order {
            subject.push_str(&format!(" order:{o}"));
        }
        audit_answer(conn, head, &actor, "provision", subject, answer)
    }
}

fn activate_in(conn: &Connection, serial: Serial, a: &Activation) -> Outcome<Device> {
    let row: Option<(String, String, Option<Vec<u8>>)> = conn
        .query_row(
            "SELECT hw_id, status, record_hash FROM devices WHERE serial = ?1",
            [serial],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db)?;
    let Some((hw, status, record_hash)) = row else {
        return Ok(Err(StoreError::UnknownSerial(serial)));
    };
    let registered =
        HwId::parse_hex(&hw).ok_or_else(|| StoreError::Corrupt(format!("hw_id {hw:?}")))?;
    if registered != a.hw_id {
        return Ok(Err(StoreError::HwIdMismatch {
            serial,
            registered,
            given: a.hw_id,
        }));
    }
    match DeviceStatus::parse(&status) {
        Some(DeviceStatus::Revoked) => return Ok(Err(StoreError::Revoked(registered))),
        Some(DeviceStatus::Active) if record_hash.as_deref() == Some(&a.record_hash[..]) => {}
        Some(DeviceStatus::Active) => return Ok(Err(StoreError::AlreadyActive(serial))),
        Some(DeviceStatus::FactoryOnly) => {
            conn.execute(
                "UPDATE devices SET status = ?2, device_pubkey = ?3, key_origin = ?4, record_hash = ?5, updated_at = ?6 WHERE serial = ?1",
                params![
                    serial,
                    DeviceStatus::Active.as_str(),
                    &a.device_pubkey[..],
                    a.key_origin.as_str(),
                    &a.record_hash[..],
                    now()
                ],
            )
            .map_err(db)?;
        }
        None => return Err(StoreError::Corrupt(format!("status {status:?}"))),
    }
    SqliteStore::find_serial(conn, serial)?
        .map(Ok)
        .ok_or(StoreError::UnknownSerial(serial))
}

fn revoke_in(conn: &Connection, serial: Serial) -> Outcome<Device> {
    // Revoking twice keeps the first revocation's time.
    conn.execute(
        "UPDATE devices SET status = ?2, updated_at = ?3 WHERE serial = ?1 AND status != ?2",
        params![serial, DeviceStatus::Revoked.as_str(), now()],
    )
    .map_err(db)?;
    Ok(SqliteStore::find_serial(conn, serial)?.ok_or(StoreError::UnknownSerial(serial)))
}

impl Store for SqliteStore {
    fn provision_under<'a>(
        &'a self,
        hw_id: HwId,
        product: Option<&'a str>,
        order: Option<&'a str>,
        actor: &'a str,
    ) -> StoreFuture<'a, Provisioned> {
        self.write(provision_change(
            hw_id,
            product.map(str::to_owned),
            order.map(str::to_owned),
            actor.to_owned(),
        ))
    }

    fn open_order<'a>(&'a self, order: &'a Order, actor: &'a str) -> StoreFuture<'a, Order> {
        let (order, actor) = (order.clone(), actor.to_owned());
        self.write(move |conn, head| {
            let answer = if order_named(conn, &order.name)?.is_some() {
                Err(StoreError::NameTaken(order.name.clone()))
            } else {
                let allow = order.allow.as_ref().map(|a| {
                    serde_json::to_string(&a.iter().map(ToString::to_string).collect::<Vec<_>>())
                        .unwrap_or_default()
                });
                conn.execute(
                    "INSERT INTO orders (name, product, quantity, used, not_before, not_after, allow, created_at) \
                     VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7)",
                    params![
                        order.name,
                        order.product,
                        order.quantity,
                        order.not_before,
                        order.not_after,
                        allow,
                        order.created_at
                    ],
                )
                .map_err(db)?;
                Ok(Order {
                    used: 0,
                    ..order.clone()
                })
            };
            audit_answer(conn, head, &actor, "order.open", order.audit_subject(), answer)
        })
    }

    fn orders(&self) -> StoreFuture<'_, Vec<Order>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT name, product, quantity, used, not_before, not_after, allow, created_at \
                     FROM orders ORDER BY name",
                )
                .map_err(db)?;
            let rows = stmt.query_map([], order_row).map_err(db)?;
            rows.map(|r| r.map_err(db).and_then(|o| o)).collect()
        })
    }

    fn activate<'a>(
        &'a self,
        serial: Serial,
        a: &'a Activation,
        actor: &'a str,
    ) -> StoreFuture<'a, Device> {
        let a = a.clone();
        let actor = actor.to_owned();
        self.write(move |conn, head| {
            let answer = activate_in(conn, serial, &a)?;
            let subject = format!("serial:{serial} record:{}", hex::encode(a.record_hash));
            audit_answer(conn, head, &actor, "activate", subject, answer)
        })
    }

    fn revoke<'a>(
        &'a self,
        serial: Serial,
        reason: &'a str,
        actor: &'a str,
    ) -> StoreFuture<'a, Device> {
        let actor = actor.to_owned();
        let subject = format!("serial:{serial} reason:{reason}");
        self.write(move |conn, head| {
            let answer = revoke_in(conn, serial)?;
            audit_answer(conn, head, &actor, "revoke", subject, answer)
        })
    }

    fn create_challenge<'a>(&'a self, c: &'a Challenge) -> StoreFuture<'a, ()> {
        let c = c.clone();
        self.write(move |conn, _| {
            // Challenges live a minute; forget those long past.
            conn.prepare_cached("DELETE FROM challenges WHERE expires_at < ?1")
                .map_err(db)?
                .execute([now() - 3600])
                .map_err(db)?;
            conn.prepare_cached(
                "INSERT INTO challenges (id, serial, nonce, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(db)?
            .execute(params![c.id, c.serial, &c.nonce[..], c.expires_at])
            .map_err(db)?;
            Ok(Ok(()))
        })
    }

    fn consume_challenge<'a>(
        &'a self,
        id: &'a str,
        now: i64,
    ) -> StoreFuture<'a, Result<Challenge, ChallengeRefusal>> {
        let id = id.to_owned();
        self.write(move |conn, _| {
            let row: Option<(u32, Vec<u8>, i64, i64)> = conn
                .prepare_cached(
                    "SELECT serial, nonce, expires_at, used FROM challenges WHERE id = ?1",
                )
                .map_err(db)?
                .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()
                .map_err(db)?;
            let Some((serial, nonce, expires_at, used)) = row else {
                return Ok(Ok(Err(ChallengeRefusal::Unknown)));
            };
            if used != 0 {
                return Ok(Ok(Err(ChallengeRefusal::Replayed)));
            }
            conn.prepare_cached("UPDATE challenges SET used = 1 WHERE id = ?1")
                .map_err(db)?
                .execute([&id])
                .map_err(db)?;
            if now >= expires_at {
                return Ok(Ok(Err(ChallengeRefusal::Expired)));
            }
            let nonce: [u8; 32] = nonce
                .try_into()
                .map_err(|_| StoreError::Corrupt("nonce length".into()))?;
            Ok(Ok(Ok(Challenge {
                id,
                serial,
                nonce,
                expires_at,
            })))
        })
    }

    fn audit<'a>(&'a self, entry: &'a AuditEntry) -> StoreFuture<'a, u64> {
        let entry = entry.clone();
        self.write(move |conn, head| Ok(Ok(append_audit(conn, head, &entry)?)))
    }

    fn audit_log(&self) -> StoreFuture<'_, Vec<ChainedEntry>> {
        self.read(move |conn| {
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
                    chain: 0,
                    seq: seq as u64,
                    time,
                    entry,
                    prev_hash: prev.try_into().map_err(bad)?,
                    hash: hash.try_into().map_err(bad)?,
                });
            }
            Ok(out)
        })
    }

    fn audit_heads(&self) -> StoreFuture<'_, Vec<ChainHead>> {
        self.read(move |conn| {
            let h = read_head(conn)?;
            Ok(if h.seq == 0 {
                vec![]
            } else {
                vec![ChainHead {
                    chain: 0,
                    seq: h.seq,
                    hash: h.hash,
                }]
            })
        })
    }

    fn device_by_serial(&self, serial: Serial) -> StoreFuture<'_, Option<Device>> {
        self.read(move |conn| Self::find_serial(conn, serial))
    }

    fn device_by_hw_id(&self, hw_id: HwId) -> StoreFuture<'_, Option<Device>> {
        self.read(move |conn| Self::find(conn, hw_id))
    }

    fn add_token_for<'a>(
        &'a self,
        name: &'a str,
        role: Role,
        token_hash: &'a [u8; 32],
        expires_at: Option<i64>,
        order: Option<&'a str>,
        actor: &'a str,
    ) -> StoreFuture<'a, TokenInfo> {
        let (name, actor) = (name.to_owned(), actor.to_owned());
        let order = order.map(str::to_owned);
        let token_hash = *token_hash;
        self.write(move |conn, head| {
            let info = TokenInfo {
                name: name.clone(),
                role,
                created_at: now(),
                expires_at,
                revoked_at: None,
                order: order.clone(),
            };
            let unknown_order = match &order {
                Some(o) => order_named(conn, o)?.is_none(),
                None => false,
            };
            let answer = if token_named(conn, &name)?.is_some() {
                Err(StoreError::NameTaken(name.clone()))
            } else if unknown_order {
                Err(StoreError::UnknownOrder(order.clone().unwrap_or_default()))
            } else {
                conn.execute(
                    "INSERT INTO tokens (token_hash, name, role, created_at, expires_at, order_name) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        &token_hash[..],
                        name,
                        role.as_str(),
                        info.created_at,
                        expires_at,
                        order
                    ],
                )
                .map_err(db)?;
                Ok(info.clone())
            };
            audit_answer(
                conn,
                head,
                &actor,
                "token.add",
                info.audit_subject(),
                answer,
            )
        })
    }

    fn revoke_token<'a>(&'a self, name: &'a str, actor: &'a str) -> StoreFuture<'a, TokenInfo> {
        let (name, actor) = (name.to_owned(), actor.to_owned());
        self.write(move |conn, head| {
            let answer = match token_named(conn, &name)? {
                None => Err(StoreError::UnknownToken(name.clone())),
                Some(t) if t.revoked_at.is_some() => Ok(t),
                Some(mut t) => {
                    let at = now();
                    conn.execute(
                        "UPDATE tokens SET revoked_at = ?1 WHERE name = ?2",
                        params![at, name],
                    )
                    .map_err(db)?;
                    t.revoked_at = Some(at);
                    Ok(t)
                }
            };
            let subject = match &answer {
                Ok(t) => t.audit_subject(),
                Err(_) => format!("token:{name}"),
            };
            audit_answer(conn, head, &actor, "token.revoke", subject, answer)
        })
    }

    fn tokens(&self) -> StoreFuture<'_, Vec<TokenInfo>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name"))
                .map_err(db)?;
            let rows = stmt.query_map([], token_row).map_err(db)?;
            rows.map(|r| r.map_err(db).and_then(token_info)).collect()
        })
    }

    fn token_by_hash<'a>(&'a self, token_hash: &'a [u8; 32]) -> StoreFuture<'a, Option<TokenInfo>> {
        let token_hash = *token_hash;
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = ?1"
            ))
            .map_err(db)?
            .query_row([&token_hash[..]], token_row)
            .optional()
            .map_err(db)?
            .map(token_info)
            .transpose()
        })
    }

    fn devices(&self) -> StoreFuture<'_, Vec<Device>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare(&format!("{SELECT} ORDER BY serial"))
                .map_err(db)?;
            let rows = stmt.query_map([], row_to_device).map_err(db)?;
            rows.map(|r| r.map_err(db).and_then(device)).collect()
        })
    }

    fn put_release<'a>(&'a self, release: &'a Release, actor: &'a str) -> StoreFuture<'a, bool> {
        let (release, actor) = (release.clone(), actor.to_owned());
        self.write(move |conn, head| {
            let kept: Option<Vec<u8>> = conn
                .query_row(
                    "SELECT sha256 FROM releases WHERE name = ?1",
                    [&release.name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            let answer = match kept {
                Some(hash) if hash == release.sha256 => Ok(false),
                Some(_) => Err(StoreError::NameTaken(release.name.clone())),
                None => {
                    conn.execute(
                        "INSERT INTO releases (name, image, sha256, created_at) VALUES (?1, ?2, ?3, ?4)",
                        params![release.name, release.image, &release.sha256[..], release.created_at],
                    )
                    .map_err(db)?;
                    Ok(true)
                }
            };
            let subject = format!("release:{} sha256:{}", release.name, hex::encode(release.sha256));
            audit_answer(conn, head, &actor, "release.put", subject, answer)
        })
    }

    fn release<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Release>> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT name, image, sha256, created_at FROM releases WHERE name = ?1",
                [&name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(db)?
            .map(|(name, image, sha256, created_at)| {
                Ok(Release {
                    name,
                    image,
                    sha256: sha256
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("release sha256".into()))?,
                    created_at,
                })
            })
            .transpose()
        })
    }

    fn put_wrapped_key<'a>(
        &'a self,
        release: &'a str,
        serial: Serial,
        wrapped: &'a [u8],
        actor: &'a str,
    ) -> StoreFuture<'a, ()> {
        let (release, wrapped, actor) = (release.to_owned(), wrapped.to_vec(), actor.to_owned());
        self.write(move |conn, head| {
            let known: Option<i64> = conn
                .query_row("SELECT 1 FROM releases WHERE name = ?1", [&release], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db)?;
            let answer = match known {
                None => Err(StoreError::UnknownRelease(release.clone())),
                Some(_) => match may_receive_copies(Self::find_serial(conn, serial)?, serial) {
                    Err(e) => Err(e),
                    Ok(_) => {
                        conn.execute(
                            "INSERT INTO wrapped_keys (release, serial, wrapped, updated_at) VALUES (?1, ?2, ?3, ?4) \
                             ON CONFLICT (release, serial) DO UPDATE SET wrapped = ?3, updated_at = ?4",
                            params![release, serial, wrapped, now()],
                        )
                        .map_err(db)?;
                        Ok(())
                    }
                },
            };
            let subject = format!("release:{release} serial:{serial}");
            audit_answer(conn, head, &actor, "release.wrap", subject, answer)
        })
    }

    fn wrapped_key<'a>(
        &'a self,
        release: &'a str,
        serial: Serial,
    ) -> StoreFuture<'a, Option<Vec<u8>>> {
        let release = release.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT wrapped FROM wrapped_keys WHERE release = ?1 AND serial = ?2",
                params![release, serial],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
        })
    }
}
