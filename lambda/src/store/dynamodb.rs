//! The production store: DynamoDB, through the AWS SDK.
//!
//! Tables, all named `PREFIX-…` and billed per request:
//! - `devices`: key `hw_id`; a global secondary index `by-serial` (keys only)
//!   maps a serial to its `hw_id`, which never changes, and the device itself
//!   is then read consistently by `hw_id`.
//! - `meta`: key `name`; the item `serial_sequence` (`next`) and one item
//!   `audit_head:C` (`seq`, `hash`) per audit chain; `token-name:NAME` items
//!   reserve token names; `serial:N` items (`hw_id`) guard each allocated
//!   serial and map it to its chip with a consistent read; `order:NAME`
//!   items are production orders.
//! - `audit`: partition key `chain`, sort key `seq`: the hash-chained log,
//!   as [`DEVICE_CHAINS`] device chains (1 to 64; a device's entries go to
//!   the chain its hardware ID hashes to) and the service chain 0 (tokens,
//!   orders, checkpoints, counted refusals).
//! - `challenges`: key `id`, with a TTL attribute `ttl` that lets DynamoDB
//!   delete them an hour after they expire.
//! - `tokens`: key `token_hash` (SHA-256 of a bearer token).
//!
//! Every change is one `TransactWriteItems`: the change with its conditions
//! (the sequence still at the value read, the device still in the state
//! read), the audit entry and its chain's head moved on from the value read.
//! A cancelled transaction (another writer got there first) is retried from
//! the reads, so allocation is atomic and gap-free and each chain unbroken.
//! The one item every new device touches is the serial sequence; a repeat
//! provision, an activation, a revocation and a device's authentication
//! touch only that device's items and its audit chain's head, so the fleet's
//! traffic spreads over [`DEVICE_CHAINS`] heads. Within one process, new
//! allocations take turns (they would only cancel each other on the
//! sequence item); across processes they race and retry.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use firmware::record::{HwId, KeyOrigin};

use super::{
    may_receive_copies, Activation, Challenge, ChallengeRefusal, Provisioned, Store, StoreError,
    StoreFuture,
};
use crate::audit::{entry_hash, genesis, AuditEntry, ChainHead, ChainedEntry};
use crate::model::{Device, DeviceStatus, Order, Release, Role, Serial, TokenInfo};

type Item = HashMap<String, AttributeValue>;

/// Most attempts at one change before giving up on contention.
const MAX_ATTEMPTS: u32 = 200;

/// How many audit chains devices' entries spread over (chains 1 to this);
/// chain 0 is the service chain.
pub const DEVICE_CHAINS: u32 = 64;

/// The audit chain of the device `hw_id`: 1 + (the first four bytes of
/// SHA-256 of its 8 bytes, little-endian) mod [`DEVICE_CHAINS`].
pub fn device_chain(hw_id: HwId) -> u32 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(hw_id.0);
    1 + u32::from_le_bytes([h[0], h[1], h[2], h[3]]) % DEVICE_CHAINS
}

fn head_key(chain: u32) -> String {
    format!("audit_head:{chain}")
}

/// A registry in DynamoDB tables named `PREFIX-…`.
#[derive(Debug)]
pub struct DynamoStore {
    client: Client,
    devices: String,
    meta: String,
    audit: String,
    challenges: String,
    tokens: String,
    releases: String,
    wrapped: String,
    /// New allocations from this process take turns.
    allocation: tokio::sync::Mutex<()>,
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

fn dbe<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    // Each error of the chain's own message, joined: what DynamoDB answered
    // (code and message) or why it could not be reached, without the raw
    // HTTP response and debug forms the SDK's errors carry.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            let more = c.to_string();
            if !text.ends_with(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            cause = c.source();
        }
        text
    }
    StoreError::Database(match e {
        SdkError::ServiceError(se) => chain(se.err()),
        other => chain(&other),
    })
}

use crate::unix_now as now;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn b(v: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(v))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Result<&'a str, StoreError> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(key))
}

fn get_n<T: std::str::FromStr>(item: &Item, key: &str) -> Result<T, StoreError> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(key))
}

fn get_b<'a>(item: &'a Item, key: &str) -> Result<Option<&'a [u8]>, StoreError> {
    match item.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_b()
            .map(|blob| Some(blob.as_ref()))
            .map_err(|_| corrupt(key)),
    }
}

fn get_array<const N: usize>(item: &Item, key: &str) -> Result<Option<[u8; N]>, StoreError> {
    get_b(item, key)?
        .map(|v| <[u8; N]>::try_from(v).map_err(|_| corrupt(key)))
        .transpose()
}

fn device_from(item: &Item) -> Result<Device, StoreError> {
    Ok(Device {
        hw_id: HwId::parse_hex(get_s(item, "hw_id")?).ok_or_else(|| corrupt("hw_id"))?,
        serial: get_n(item, "serial")?,
        product: item.get("product").and_then(|v| v.as_s().ok()).cloned(),
        status: DeviceStatus::parse(get_s(item, "status")?).ok_or_else(|| corrupt("status"))?,
        created_at: get_n(item, "created_at")?,
        updated_at: get_n(item, "updated_at")?,
        device_pubkey: get_array(item, "device_pubkey")?,
        key_origin: match item.get("key_origin") {
            None => None,
            Some(v) => Some(
                v.as_s()
                    .ok()
                    .and_then(|o| KeyOrigin::parse(o))
                    .ok_or_else(|| corrupt("key_origin"))?,
            ),
        },
    })
}

/// A put of `item` that holds only if `condition` does.
fn put(
    table: &str,
    item: Item,
    condition: &str,
    names: &[(&str, &str)],
) -> Result<TransactWriteItem, StoreError> {
    put_if(table, item, condition, names, vec![])
}

/// Like [`put`], with expression values.
fn put_if(
    table: &str,
    item: Item,
    condition: &str,
    names: &[(&str, &str)],
    values: Vec<(&str, AttributeValue)>,
) -> Result<TransactWriteItem, StoreError> {
    let mut p = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition);
    for (k, v) in names {
        p = p.expression_attribute_names(*k, *v);
    }
    for (k, v) in values {
        p = p.expression_attribute_values(k, v);
    }
    Ok(TransactWriteItem::builder()
        .put(p.build().map_err(db)?)
        .build())
}

/// Whether a transaction lost a race (retry) rather than failed.
fn cancelled(
    e: &SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    matches!(
        e.as_service_error(),
        Some(TransactWriteItemsError::TransactionCanceledException(_))
    )
}

async fn backoff(attempt: u32) {
    let mut jitter = [0u8; 1];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut jitter);
    let ms = (1u64 << attempt.min(5)) + u64::from(jitter[0] % 8);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

impl DynamoStore {
    /// Connect, and with `create_tables` create the tables (with the index
    /// and the TTL) that do not exist. Credentials and region come from the
    /// environment (the region defaults to `us-east-1` with an emulator
    /// endpoint).
    pub async fn open(
        prefix: &str,
        endpoint: Option<&str>,
        create_tables: bool,
    ) -> anyhow::Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
            if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                loader = loader.region(Region::new("us-east-1"));
            }
        }
        let conf = loader.load().await;
        if conf.region().is_none() {
            anyhow::bail!("no AWS region: set AWS_REGION");
        }
        let store = Self {
            client: Client::new(&conf),
            devices: format!("{prefix}-devices"),
            meta: format!("{prefix}-meta"),
            audit: format!("{prefix}-audit"),
            challenges: format!("{prefix}-challenges"),
            tokens: format!("{prefix}-tokens"),
            releases: format!("{prefix}-releases"),
            wrapped: format!("{prefix}-wrapped"),
            allocation: tokio::sync::Mutex::new(()),
        };
        if create_tables {
            store.create_tables().await?;
        }
        Ok(store)
    }

    async fn create_tables(&self) -> anyhow::Result<()> {
        let key = |name: &str, t: ScalarAttributeType| -> anyhow::Result<_> {
            Ok((
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(t)
                    .build()?,
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(KeyType::Hash)
                    .build()?,
            ))
        };
        let tables = [
            (&self.devices, "hw_id", ScalarAttributeType::S),
            (&self.meta, "name", ScalarAttributeType::S),
            (&self.audit, "chain", ScalarAttributeType::N),
            (&self.challenges, "id", ScalarAttributeType::S),
            (&self.tokens, "token_hash", ScalarAttributeType::B),
            (&self.releases, "name", ScalarAttributeType::S),
            (&self.wrapped, "id", ScalarAttributeType::S),
        ];
        for (table, attr, kind) in tables {
            let (def, schema) = key(attr, kind)?;
            let mut create = self
                .client
                .create_table()
                .table_name(table.as_str())
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(def)
                .key_schema(schema);
            if table == &self.audit {
                create = create
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name("seq")
                            .attribute_type(ScalarAttributeType::N)
                            .build()?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name("seq")
                            .key_type(KeyType::Range)
                            .build()?,
                    );
            }
            if table == &self.devices {
                let (def, schema) = key("serial", ScalarAttributeType::N)?;
                create = create.attribute_definitions(def).global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name("by-serial")
                        .key_schema(schema)
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::KeysOnly)
                                .build(),
                        )
                        .build()?,
                );
            }
            match create.send().await {
                Ok(_) => {
                    if table == &self.challenges {
                        self.client
                            .update_time_to_live()
                            .table_name(table.as_str())
                            .time_to_live_specification(
                                TimeToLiveSpecification::builder()
                                    .enabled(true)
                                    .attribute_name("ttl")
                                    .build()?,
                            )
                            .send()
                            .await
                            .map_err(|e| anyhow::anyhow!("{table}: {}", dbe(e)))?;
                    }
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) => {}
                Err(e) => anyhow::bail!("{table}: {}", dbe(e)),
            }
        }
        Ok(())
    }

    async fn get(
        &self,
        table: &str,
        key: &str,
        value: AttributeValue,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .key(key, value)
            .consistent_read(true)
            .send()
            .await
            .map_err(dbe)?;
        Ok(out.item)
    }

    async fn device(&self, hw_id: HwId) -> Result<Option<Device>, StoreError> {
        self.get(&self.devices, "hw_id", s(hw_id.to_string()))
            .await?
            .as_ref()
            .map(device_from)
            .transpose()
    }

    /// The hardware ID registered under `serial` (from the index).
    async fn hw_id_of(&self, serial: Serial) -> Result<Option<HwId>, StoreError> {
        // The serial's guard item, written in the allocation's transaction,
        // is read consistently: a device is found by serial the moment its
        // allocation is answered (the index below is only eventually
        // consistent, and serves devices allocated before guards existed).
        if let Some(item) = self.get(&self.meta, "name", s(serial_key(serial))).await? {
            return Ok(Some(
                HwId::parse_hex(get_s(&item, "hw_id")?).ok_or_else(|| corrupt("hw_id"))?,
            ));
        }
        let out = self
            .client
            .query()
            .table_name(&self.devices)
            .index_name("by-serial")
            .key_condition_expression("#s = :s")
            .expression_attribute_names("#s", "serial")
            .expression_attribute_values(":s", n(serial))
            .send()
            .await
            .map_err(dbe)?;
        match out.items().first() {
            None => Ok(None),
            Some(item) => Ok(Some(
                HwId::parse_hex(get_s(item, "hw_id")?).ok_or_else(|| corrupt("hw_id"))?,
            )),
        }
    }

    async fn device_at(&self, serial: Serial) -> Result<Option<Device>, StoreError> {
        match self.hw_id_of(serial).await? {
            None => Ok(None),
            Some(hw_id) => Ok(self.device(hw_id).await?.filter(|d| d.serial == serial)),
        }
    }

    /// The head of `chain`: `(0, genesis)` before its first entry.
    async fn head(&self, chain: u32) -> Result<(u64, [u8; 32]), StoreError> {
        match self.get(&self.meta, "name", s(head_key(chain))).await? {
            None => Ok((0, genesis(chain))),
            Some(item) => head_from(&item).map(|h| (h.seq, h.hash)),
        }
    }

    /// Commit `items` with the audit entry for them (in `chain`),
    /// atomically. `Ok(Some(seq))`: committed as entry `seq`; `Ok(None)`:
    /// another writer got there first; read again and retry.
    async fn commit(
        &self,
        mut items: Vec<TransactWriteItem>,
        entry: &AuditEntry,
        chain: u32,
    ) -> Result<Option<u64>, StoreError> {
        let entry = &entry.escaped();
        let (prev_seq, prev_hash) = self.head(chain).await?;
        let seq = prev_seq + 1;
        let time = now();
        let hash = entry_hash(&prev_hash, seq, time, entry);
        let record = HashMap::from([
            ("chain".to_owned(), n(chain)),
            ("seq".to_owned(), n(seq)),
            ("time".to_owned(), n(time)),
            ("actor".to_owned(), s(&entry.actor)),
            ("action".to_owned(), s(&entry.action)),
            ("subject".to_owned(), s(&entry.subject)),
            ("outcome".to_owned(), s(&entry.outcome)),
            ("prev_hash".to_owned(), b(&prev_hash)),
            ("hash".to_owned(), b(&hash)),
        ]);
        items.push(put(
            &self.audit,
            record,
            "attribute_not_exists(#k)",
            &[("#k", "seq")],
        )?);
        let head = HashMap::from([
            ("name".to_owned(), s(head_key(chain))),
            ("chain".to_owned(), n(chain)),
            ("seq".to_owned(), n(seq)),
            ("hash".to_owned(), b(&hash)),
        ]);
        items.push(put_if(
            &self.meta,
            head,
            "attribute_not_exists(#k) OR #seq = :prev",
            &[("#k", "name"), ("#seq", "seq")],
            vec![(":prev", n(prev_seq))],
        )?);
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Some(seq)),
            Err(e) if cancelled(&e) => Ok(None),
            Err(e) => Err(dbe(e)),
        }
    }

    /// Append `entry` alone to `chain`; returns its sequence number.
    async fn append(&self, entry: &AuditEntry, chain: u32) -> Result<u64, StoreError> {
        for attempt in 0..MAX_ATTEMPTS {
            if let Some(seq) = self.commit(vec![], entry, chain).await? {
                return Ok(seq);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Database(
            "too much contention; try again".into(),
        ))
    }

    /// Run one audited change: `plan` reads the current state and returns the
    /// answer with the writes it needs; the writes and the audit entry commit
    /// together, or everything is read and planned again.
    async fn change<T, P, F>(&self, actor: &str, action: &str, mut plan: P) -> Result<T, StoreError>
    where
        P: FnMut() -> F,
        F: Future<Output = Result<Planned<T>, StoreError>>,
    {
        for attempt in 0..MAX_ATTEMPTS {
            let planned = plan().await?;
            let outcome = match &planned.answer {
                Ok(_) => "ok",
                Err(e) => e.code(),
            };
            let entry = AuditEntry {
                actor: actor.to_owned(),
                action: action.to_owned(),
                subject: planned.subject,
                outcome: outcome.to_owned(),
            };
            if self
                .commit(planned.writes, &entry, planned.chain)
                .await?
                .is_some()
            {
                return planned.answer;
            }
            backoff(attempt).await;
        }
        Err(StoreError::Database(
            "too much contention; try again".into(),
        ))
    }

    /// Every item of `table` (consistent reads, all pages).
    async fn scan_all(&self, table: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut pages = self
            .client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            items.push(item.map_err(dbe)?);
        }
        Ok(items)
    }

    /// The token named `name` (its stored item and what it says): through
    /// its name reservation, or, for a reservation from before they named
    /// the token, by a scan.
    async fn token_item_named(&self, name: &str) -> Result<Option<(Item, TokenInfo)>, StoreError> {
        let reserved = format!("token-name:{name}");
        let Some(reservation) = self.get(&self.meta, "name", s(&reserved)).await? else {
            return Ok(None);
        };
        let item = match get_b(&reservation, "token_hash")? {
            Some(hash) => self.get(&self.tokens, "token_hash", b(hash)).await?,
            None => self
                .scan_all(&self.tokens)
                .await?
                .into_iter()
                .find(|item| get_s(item, "name").is_ok_and(|n| n == name)),
        };
        item.map(|item| token_from(&item).map(|info| (item, info)))
            .transpose()
    }

    /// Plan a provision of `hw_id`: its serial back, or a new one (in an
    /// order, counted); `known` is a fresh read of its device item, if
    /// one was made.
    async fn plan_provision(
        &self,
        hw_id: HwId,
        product: Option<&str>,
        order: Option<&str>,
        in_order: &str,
        chain: u32,
        known: Option<Option<Device>>,
    ) -> Result<Planned<Provisioned>, StoreError> {
        let known = match known {
            Some(read) => read,
            None => self.device(hw_id).await?,
        };
        if let Some(existing) = known {
            let subject = format!("hw_id:{hw_id} serial:{}{in_order}", existing.serial);
            let answer = if existing.status == DeviceStatus::Revoked {
                Err(StoreError::Revoked(hw_id))
            } else {
                Ok(Provisioned {
                    device: existing,
                    created: false,
                })
            };
            return Ok(Planned {
                answer,
                writes: vec![],
                subject,
                chain,
            });
        }
        // Within an order: admitted, and its count moved on from the value
        // read, in the same transaction as the allocation.
        let mut order_write = None;
        let mut product = product.map(str::to_owned);
        if let Some(name) = order {
            let refuse = |e| {
                Ok(Planned {
                    answer: Err(e),
                    writes: vec![],
                    subject: format!("hw_id:{hw_id}{in_order}"),
                    chain,
                })
            };
            let Some(mut item) = self.get(&self.meta, "name", s(order_key(name))).await? else {
                return refuse(StoreError::UnknownOrder(name.to_owned()));
            };
            let o = order_from(&item)?;
            if let Err(e) = o.admits(hw_id, product.as_deref(), now()) {
                return refuse(e);
            }
            item.insert("used".into(), n(o.used + 1));
            order_write = Some(put_if(
                &self.meta,
                item,
                "#used = :used",
                &[("#used", "used")],
                vec![(":used", n(o.used))],
            )?);
            product = Some(o.product);
        }
        let product = product.as_deref();
        let next: u64 = match self.get(&self.meta, "name", s("serial_sequence")).await? {
            None => 1,
            Some(item) => get_n(&item, "next")?,
        };
        let Ok(serial) = Serial::try_from(next) else {
            return Ok(Planned {
                answer: Err(StoreError::SerialsExhausted),
                writes: vec![],
                subject: format!("hw_id:{hw_id}"),
                chain,
            });
        };
        let device = Device::allocated(hw_id, serial, product, now());
        let sequence = HashMap::from([
            ("name".to_owned(), s("serial_sequence")),
            ("next".to_owned(), n(next + 1)),
        ]);
        let writes = vec![
            put_if(
                &self.meta,
                sequence,
                if next == 1 {
                    "attribute_not_exists(#k)"
                } else {
                    "#next = :next"
                },
                &if next == 1 {
                    vec![("#k", "name")]
                } else {
                    vec![("#next", "next")]
                },
                if next == 1 {
                    vec![]
                } else {
                    vec![(":next", n(next))]
                },
            )?,
            put(
                &self.devices,
                Self::device_item(&device, None),
                "attribute_not_exists(#k)",
                &[("#k", "hw_id")],
            )?,
            // One guard item per serial: no serial can ever name two
            // chips, whatever happens to the sequence item.
            put(
                &self.meta,
                HashMap::from([
                    ("name".to_owned(), s(serial_key(serial))),
                    ("hw_id".to_owned(), s(hw_id.to_string())),
                ]),
                "attribute_not_exists(#k)",
                &[("#k", "name")],
            )?,
        ];
        let mut writes = writes;
        writes.extend(order_write.take());
        Ok(Planned {
            answer: Ok(Provisioned {
                device,
                created: true,
            }),
            writes,
            subject: format!("hw_id:{hw_id} serial:{serial}{in_order}"),
            chain,
        })
    }

    fn device_item(d: &Device, a: Option<&Activation>) -> Item {
        let mut item = HashMap::from([
            ("hw_id".to_owned(), s(d.hw_id.to_string())),
            ("serial".to_owned(), n(d.serial)),
            ("status".to_owned(), s(d.status.as_str())),
            ("created_at".to_owned(), n(d.created_at)),
            ("updated_at".to_owned(), n(d.updated_at)),
        ]);
        if let Some(p) = &d.product {
            item.insert("product".into(), s(p));
        }
        if let Some(k) = &d.device_pubkey {
            item.insert("device_pubkey".into(), b(k));
        }
        if let Some(o) = d.key_origin {
            item.insert("key_origin".into(), s(o.as_str()));
        }
        if let Some(a) = a {
            item.insert("record_hash".into(), b(&a.record_hash));
        }
        item
    }

    /// A write of `item` that holds only if the device is still in `status`.
    fn device_update(
        &self,
        item: Item,
        status: DeviceStatus,
    ) -> Result<TransactWriteItem, StoreError> {
        put_if(
            &self.devices,
            item,
            "#st = :st",
            &[("#st", "status")],
            vec![(":st", s(status.as_str()))],
        )
    }
}

fn token_from(item: &Item) -> Result<TokenInfo, StoreError> {
    let optional = |key: &str| -> Result<Option<i64>, StoreError> {
        match item.get(key) {
            None => Ok(None),
            Some(_) => get_n(item, key).map(Some),
        }
    };
    Ok(TokenInfo {
        name: get_s(item, "name")?.to_owned(),
        role: Role::parse(get_s(item, "role")?).ok_or_else(|| corrupt("role"))?,
        created_at: get_n(item, "created_at")?,
        expires_at: optional("expires_at")?,
        revoked_at: optional("revoked_at")?,
        order: item
            .get("order")
            .map(|_| get_s(item, "order").map(str::to_owned))
            .transpose()?,
    })
}

/// Each allocated serial has a guard item `serial:N` (its `hw_id`) in `meta`.
fn release_from(item: &Item) -> Result<Release, StoreError> {
    Ok(Release {
        name: get_s(item, "name")?.to_owned(),
        image: get_b(item, "image")?
            .ok_or_else(|| corrupt("release image"))?
            .to_vec(),
        sha256: get_array(item, "sha256")?.ok_or_else(|| corrupt("release sha256"))?,
        created_at: get_n(item, "created_at")?,
    })
}

/// The key of a wrapped-key item.
fn wrapped_id(release: &str, serial: Serial) -> String {
    format!("{release}#{serial}")
}

fn serial_key(serial: Serial) -> String {
    format!("serial:{serial}")
}

/// Orders live in `meta` as `order:NAME` items.
const ORDER_PREFIX: &str = "order:";

fn order_key(name: &str) -> String {
    format!("{ORDER_PREFIX}{name}")
}

fn order_from(item: &Item) -> Result<Order, StoreError> {
    let allow = match item.get("allow") {
        None => None,
        Some(AttributeValue::Ss(ids)) => Some(
            ids.iter()
                .map(|h| HwId::parse_hex(h).ok_or_else(|| corrupt("order hw_id")))
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(corrupt("order allow list")),
    };
    Ok(Order {
        name: get_s(item, "name")?
            .strip_prefix(ORDER_PREFIX)
            .ok_or_else(|| corrupt("order name"))?
            .to_owned(),
        product: get_s(item, "product")?.to_owned(),
        quantity: get_n(item, "quantity")?,
        used: get_n(item, "used")?,
        not_before: get_n(item, "not_before")?,
        not_after: get_n(item, "not_after")?,
        allow,
        created_at: get_n(item, "created_at")?,
    })
}

/// What a change will answer, the writes it needs, its audit subject and
/// the audit chain the entry goes to.
struct Planned<T> {
    answer: Result<T, StoreError>,
    writes: Vec<TransactWriteItem>,
    subject: String,
    chain: u32,
}

fn head_from(item: &Item) -> Result<ChainHead, StoreError> {
    let name = get_s(item, "name")?;
    let chain = name
        .strip_prefix("audit_head:")
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| corrupt("audit head name"))?;
    Ok(ChainHead {
        chain,
        seq: get_n(item, "seq")?,
        hash: get_array(item, "hash")?.ok_or_else(|| corrupt("audit head"))?,
    })
}

impl Store for DynamoStore {
    fn provision_under<'a>(
        &'a self,
        hw_id: HwId,
        product: Option<&'a str>,
        order: Option<&'a str>,
        actor: &'a str,
    ) -> StoreFuture<'a, Provisioned> {
        let chain = device_chain(hw_id);
        Box::pin(async move {
            let in_order = order.map(|o| format!(" order:{o}")).unwrap_or_default();
            let in_order = in_order.as_str();
            // A known chip is answered from its own item; a new one takes
            // its turn for the sequence (the first plan reuses this read).
            let first = self.device(hw_id).await?;
            let _turn = match first {
                None => Some(self.allocation.lock().await),
                Some(_) => None,
            };
            let mut first = Some(first);
            self.change(actor, "provision", || {
                self.plan_provision(hw_id, product, order, in_order, chain, first.take())
            })
            .await
        })
    }

    fn activate<'a>(
        &'a self,
        serial: Serial,
        a: &'a Activation,
        actor: &'a str,
    ) -> StoreFuture<'a, Device> {
        let chain = device_chain(a.hw_id);
        Box::pin(self.change(actor, "activate", move || async move {
            let subject = format!("serial:{serial} record:{}", hex::encode(a.record_hash));
            let refuse = |e| {
                Ok(Planned {
                    answer: Err(e),
                    writes: vec![],
                    subject: subject.clone(),
                    chain,
                })
            };
            let Some(d) = self.device_at(serial).await? else {
                return refuse(StoreError::UnknownSerial(serial));
            };
            if d.hw_id != a.hw_id {
                return refuse(StoreError::HwIdMismatch {
                    serial,
                    registered: d.hw_id,
                    given: a.hw_id,
                });
            }
            let item = self
                .get(&self.devices, "hw_id", s(d.hw_id.to_string()))
                .await?;
            let stored_record: Option<[u8; 32]> = match &item {
                Some(i) => get_array(i, "record_hash")?,
                None => None,
            };
            match d.status {
                DeviceStatus::Revoked => refuse(StoreError::Revoked(d.hw_id)),
                DeviceStatus::Active if stored_record == Some(a.record_hash) => Ok(Planned {
                    answer: Ok(d),
                    writes: vec![],
                    subject: subject.clone(),
                    chain,
                }),
                DeviceStatus::Active => refuse(StoreError::AlreadyActive(serial)),
                DeviceStatus::FactoryOnly => {
                    let active = Device {
                        status: DeviceStatus::Active,
                        updated_at: now(),
                        device_pubkey: Some(a.device_pubkey),
                        key_origin: Some(a.key_origin),
                        ..d
                    };
                    let write = self.device_update(
                        Self::device_item(&active, Some(a)),
                        DeviceStatus::FactoryOnly,
                    )?;
                    Ok(Planned {
                        answer: Ok(active),
                        writes: vec![write],
                        subject: subject.clone(),
                        chain,
                    })
                }
            }
        }))
    }

    fn revoke<'a>(
        &'a self,
        serial: Serial,
        reason: &'a str,
        actor: &'a str,
    ) -> StoreFuture<'a, Device> {
        let subject = format!("serial:{serial} reason:{reason}");
        Box::pin(self.change(actor, "revoke", move || {
            let subject = subject.clone();
            async move {
                let Some(d) = self.device_at(serial).await? else {
                    return Ok(Planned {
                        answer: Err(StoreError::UnknownSerial(serial)),
                        writes: vec![],
                        subject,
                        chain: 0,
                    });
                };
                let chain = device_chain(d.hw_id);
                if d.status == DeviceStatus::Revoked {
                    return Ok(Planned {
                        answer: Ok(d),
                        writes: vec![],
                        subject,
                        chain,
                    });
                }
                let item = self
                    .get(&self.devices, "hw_id", s(d.hw_id.to_string()))
                    .await?
                    .ok_or(StoreError::UnknownSerial(serial))?;
                let was = d.status;
                let revoked = Device {
                    status: DeviceStatus::Revoked,
                    updated_at: now(),
                    ..d
                };
                let mut new_item = item;
                new_item.insert("status".into(), s(DeviceStatus::Revoked.as_str()));
                new_item.insert("updated_at".into(), n(revoked.updated_at));
                Ok(Planned {
                    answer: Ok(revoked),
                    writes: vec![self.device_update(new_item, was)?],
                    subject,
                    chain,
                })
            }
        }))
    }

    fn create_challenge<'a>(&'a self, c: &'a Challenge) -> StoreFuture<'a, ()> {
        let item = HashMap::from([
            ("id".to_owned(), s(&c.id)),
            ("serial".to_owned(), n(c.serial)),
            ("nonce".to_owned(), b(&c.nonce)),
            ("expires_at".to_owned(), n(c.expires_at)),
            ("used".to_owned(), AttributeValue::Bool(false)),
            // DynamoDB deletes the item some time after this (TTL).
            ("ttl".to_owned(), n(c.expires_at + 3600)),
        ]);
        Box::pin(async move {
            self.client
                .put_item()
                .table_name(&self.challenges)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", "id")
                .send()
                .await
                .map_err(dbe)?;
            Ok(())
        })
    }

    fn consume_challenge<'a>(
        &'a self,
        id: &'a str,
        now: i64,
    ) -> StoreFuture<'a, Result<Challenge, ChallengeRefusal>> {
        Box::pin(async move {
            let out = self
                .client
                .update_item()
                .table_name(&self.challenges)
                .key("id", s(id))
                .update_expression("SET #u = :t")
                .condition_expression("attribute_exists(#k) AND #u = :f")
                .expression_attribute_names("#u", "used")
                .expression_attribute_names("#k", "id")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .expression_attribute_values(":f", AttributeValue::Bool(false))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
                .await;
            let item = match out {
                Ok(out) => out.attributes.ok_or_else(|| corrupt("challenge"))?,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    // Lost: it was used before, or never existed.
                    let exists = self.get(&self.challenges, "id", s(id)).await?.is_some();
                    return Ok(Err(if exists {
                        ChallengeRefusal::Replayed
                    } else {
                        ChallengeRefusal::Unknown
                    }));
                }
                Err(e) => return Err(dbe(e)),
            };
            let expires_at: i64 = get_n(&item, "expires_at")?;
            if now >= expires_at {
                return Ok(Err(ChallengeRefusal::Expired));
            }
            Ok(Ok(Challenge {
                id: id.to_owned(),
                serial: get_n(&item, "serial")?,
                nonce: get_array(&item, "nonce")?.ok_or_else(|| corrupt("nonce"))?,
                expires_at,
            }))
        })
    }

    fn audit<'a>(&'a self, entry: &'a AuditEntry) -> StoreFuture<'a, u64> {
        Box::pin(self.append(entry, 0))
    }

    fn audit_device<'a>(&'a self, hw_id: HwId, entry: &'a AuditEntry) -> StoreFuture<'a, u64> {
        Box::pin(self.append(entry, device_chain(hw_id)))
    }

    fn audit_log(&self) -> StoreFuture<'_, Vec<ChainedEntry>> {
        Box::pin(async move {
            let mut entries = Vec::new();
            for item in self.scan_all(&self.audit).await? {
                entries.push(ChainedEntry {
                    chain: get_n(&item, "chain")?,
                    seq: get_n(&item, "seq")?,
                    time: get_n(&item, "time")?,
                    entry: AuditEntry {
                        actor: get_s(&item, "actor")?.to_owned(),
                        action: get_s(&item, "action")?.to_owned(),
                        subject: get_s(&item, "subject")?.to_owned(),
                        outcome: get_s(&item, "outcome")?.to_owned(),
                    },
                    prev_hash: get_array(&item, "prev_hash")?
                        .ok_or_else(|| corrupt("prev_hash"))?,
                    hash: get_array(&item, "hash")?.ok_or_else(|| corrupt("hash"))?,
                });
            }
            entries.sort_by_key(|e| (e.chain, e.seq));
            Ok(entries)
        })
    }

    fn audit_heads(&self) -> StoreFuture<'_, Vec<ChainHead>> {
        Box::pin(async move {
            // Every chain's head item, by key, consistently, in batches of
            // up to 100 keys, following up on unprocessed keys.
            let mut pending: Vec<Item> = (0..=DEVICE_CHAINS)
                .map(|c| HashMap::from([("name".to_owned(), s(head_key(c)))]))
                .collect();
            let mut heads = Vec::new();
            let mut attempt = 0;
            while !pending.is_empty() {
                let batch: Vec<Item> = pending.drain(..pending.len().min(100)).collect();
                let keys = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(batch))
                    .consistent_read(true)
                    .build()
                    .map_err(db)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.meta, keys)
                    .send()
                    .await
                    .map_err(dbe)?;
                for item in out
                    .responses()
                    .into_iter()
                    .flat_map(|r| r.values())
                    .flatten()
                {
                    heads.push(head_from(item)?);
                }
                if let Some(left) = out.unprocessed_keys().and_then(|u| u.get(&self.meta)) {
                    if !left.keys().is_empty() {
                        pending.extend(left.keys().iter().cloned());
                        backoff(attempt).await;
                        attempt += 1;
                    }
                }
            }
            heads.sort_by_key(|h| h.chain);
            Ok(heads)
        })
    }

    fn device_by_serial(&self, serial: Serial) -> StoreFuture<'_, Option<Device>> {
        Box::pin(self.device_at(serial))
    }

    fn device_by_hw_id(&self, hw_id: HwId) -> StoreFuture<'_, Option<Device>> {
        Box::pin(self.device(hw_id))
    }

    fn open_order<'a>(&'a self, order: &'a Order, actor: &'a str) -> StoreFuture<'a, Order> {
        let subject = order.audit_subject();
        Box::pin(self.change(actor, "order.open", move || {
            let subject = subject.clone();
            async move {
                let key = order_key(&order.name);
                if self.get(&self.meta, "name", s(&key)).await?.is_some() {
                    return Ok(Planned {
                        answer: Err(StoreError::NameTaken(order.name.clone())),
                        writes: vec![],
                        subject,
                        chain: 0,
                    });
                }
                let opened = Order {
                    used: 0,
                    ..order.clone()
                };
                let mut item = HashMap::from([
                    ("name".to_owned(), s(key)),
                    ("product".to_owned(), s(&opened.product)),
                    ("quantity".to_owned(), n(opened.quantity)),
                    ("used".to_owned(), n(0)),
                    ("not_before".to_owned(), n(opened.not_before)),
                    ("not_after".to_owned(), n(opened.not_after)),
                    ("created_at".to_owned(), n(opened.created_at)),
                ]);
                if let Some(allow) = &opened.allow {
                    item.insert(
                        "allow".into(),
                        AttributeValue::Ss(allow.iter().map(ToString::to_string).collect()),
                    );
                }
                Ok(Planned {
                    answer: Ok(opened),
                    writes: vec![put(
                        &self.meta,
                        item,
                        "attribute_not_exists(#k)",
                        &[("#k", "name")],
                    )?],
                    subject,
                    chain: 0,
                })
            }
        }))
    }

    fn orders(&self) -> StoreFuture<'_, Vec<Order>> {
        Box::pin(async move {
            let mut orders = self
                .scan_all(&self.meta)
                .await?
                .iter()
                .filter(|i| get_s(i, "name").is_ok_and(|n| n.starts_with(ORDER_PREFIX)))
                .map(order_from)
                .collect::<Result<Vec<_>, _>>()?;
            orders.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(orders)
        })
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
        let info = TokenInfo {
            name: name.to_owned(),
            role,
            created_at: now(),
            expires_at,
            revoked_at: None,
            order: order.map(str::to_owned),
        };
        let subject = info.audit_subject();
        Box::pin(self.change(actor, "token.add", move || {
            let (subject, info) = (subject.clone(), info.clone());
            async move {
                let reserved = format!("token-name:{name}");
                if self.get(&self.meta, "name", s(&reserved)).await?.is_some() {
                    return Ok(Planned {
                        answer: Err(StoreError::NameTaken(name.to_owned())),
                        writes: vec![],
                        subject,
                        chain: 0,
                    });
                }
                if let Some(o) = order {
                    if self
                        .get(&self.meta, "name", s(order_key(o)))
                        .await?
                        .is_none()
                    {
                        return Ok(Planned {
                            answer: Err(StoreError::UnknownOrder(o.to_owned())),
                            writes: vec![],
                            subject,
                            chain: 0,
                        });
                    }
                }
                let mut token = HashMap::from([
                    ("token_hash".to_owned(), b(token_hash)),
                    ("name".to_owned(), s(name)),
                    ("role".to_owned(), s(role.as_str())),
                    ("created_at".to_owned(), n(info.created_at)),
                ]);
                if let Some(at) = expires_at {
                    token.insert("expires_at".into(), n(at));
                }
                if let Some(o) = order {
                    token.insert("order".into(), s(o));
                }
                // The reservation also says which token has the name, so a
                // revocation by name needs no scan.
                let reservation = HashMap::from([
                    ("name".to_owned(), s(reserved)),
                    ("token_hash".to_owned(), b(token_hash)),
                ]);
                Ok(Planned {
                    answer: Ok(info),
                    writes: vec![
                        put(
                            &self.tokens,
                            token,
                            "attribute_not_exists(#k)",
                            &[("#k", "token_hash")],
                        )?,
                        put(
                            &self.meta,
                            reservation,
                            "attribute_not_exists(#k)",
                            &[("#k", "name")],
                        )?,
                    ],
                    subject,
                    chain: 0,
                })
            }
        }))
    }

    fn revoke_token<'a>(&'a self, name: &'a str, actor: &'a str) -> StoreFuture<'a, TokenInfo> {
        Box::pin(self.change(actor, "token.revoke", move || async move {
            let Some((mut item, info)) = self.token_item_named(name).await? else {
                return Ok(Planned {
                    answer: Err(StoreError::UnknownToken(name.to_owned())),
                    writes: vec![],
                    subject: format!("token:{name}"),
                    chain: 0,
                });
            };
            let subject = info.audit_subject();
            if info.revoked_at.is_some() {
                return Ok(Planned {
                    answer: Ok(info),
                    writes: vec![],
                    subject,
                    chain: 0,
                });
            }
            let at = now();
            item.insert("revoked_at".into(), n(at));
            Ok(Planned {
                answer: Ok(TokenInfo {
                    revoked_at: Some(at),
                    ..info
                }),
                writes: vec![put(
                    &self.tokens,
                    item,
                    "attribute_exists(#k) AND attribute_not_exists(#r)",
                    &[("#k", "token_hash"), ("#r", "revoked_at")],
                )?],
                subject,
                chain: 0,
            })
        }))
    }

    fn tokens(&self) -> StoreFuture<'_, Vec<TokenInfo>> {
        Box::pin(async move {
            let mut tokens = self
                .scan_all(&self.tokens)
                .await?
                .iter()
                .map(token_from)
                .collect::<Result<Vec<_>, _>>()?;
            tokens.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(tokens)
        })
    }

    fn token_by_hash<'a>(&'a self, token_hash: &'a [u8; 32]) -> StoreFuture<'a, Option<TokenInfo>> {
        Box::pin(async move {
            self.get(&self.tokens, "token_hash", b(token_hash))
                .await?
                .map(|item| token_from(&item))
                .transpose()
        })
    }

    fn devices(&self) -> StoreFuture<'_, Vec<Device>> {
        Box::pin(async move {
            let mut devices = self
                .scan_all(&self.devices)
                .await?
                .iter()
                .map(device_from)
                .collect::<Result<Vec<_>, _>>()?;
            devices.sort_by_key(|d| d.serial);
            Ok(devices)
        })
    }

    fn put_release<'a>(&'a self, release: &'a Release, actor: &'a str) -> StoreFuture<'a, bool> {
        let subject = format!(
            "release:{} sha256:{}",
            release.name,
            hex::encode(release.sha256)
        );
        Box::pin(self.change(actor, "release.put", move || {
            let subject = subject.clone();
            async move {
                let kept = self.get(&self.releases, "name", s(&release.name)).await?;
                let (answer, writes) = match kept {
                    Some(item) => {
                        let same = get_array::<32>(&item, "sha256")? == Some(release.sha256);
                        let answer = if same {
                            Ok(false)
                        } else {
                            Err(StoreError::NameTaken(release.name.clone()))
                        };
                        (answer, vec![])
                    }
                    None => {
                        let item = HashMap::from([
                            ("name".to_owned(), s(&release.name)),
                            ("image".to_owned(), b(&release.image)),
                            ("sha256".to_owned(), b(&release.sha256)),
                            ("created_at".to_owned(), n(release.created_at)),
                        ]);
                        let write = put(
                            &self.releases,
                            item,
                            "attribute_not_exists(#k)",
                            &[("#k", "name")],
                        )?;
                        (Ok(true), vec![write])
                    }
                };
                Ok(Planned {
                    answer,
                    writes,
                    subject,
                    chain: 0,
                })
            }
        }))
    }

    fn release<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Release>> {
        Box::pin(async move {
            self.get(&self.releases, "name", s(name))
                .await?
                .as_ref()
                .map(release_from)
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
        let subject = format!("release:{release} serial:{serial}");
        Box::pin(self.change(actor, "release.wrap", move || {
            let subject = subject.clone();
            async move {
                let refused = |e: StoreError, chain: u32| Planned {
                    answer: Err(e),
                    writes: vec![],
                    subject: subject.clone(),
                    chain,
                };
                if self
                    .get(&self.releases, "name", s(release))
                    .await?
                    .is_none()
                {
                    return Ok(refused(StoreError::UnknownRelease(release.to_owned()), 0));
                }
                let device = self.device_at(serial).await?;
                let chain = device.as_ref().map_or(0, |d| device_chain(d.hw_id));
                let device = match may_receive_copies(device, serial) {
                    Ok(d) => d,
                    Err(e) => return Ok(refused(e, chain)),
                };
                let item = HashMap::from([
                    ("id".to_owned(), s(wrapped_id(release, serial))),
                    ("release".to_owned(), s(release)),
                    ("serial".to_owned(), n(serial)),
                    ("wrapped".to_owned(), b(wrapped)),
                    ("updated_at".to_owned(), n(now())),
                ]);
                let write = TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.wrapped)
                            .set_item(Some(item))
                            .build()
                            .map_err(db)?,
                    )
                    .build();
                // Not revoked in the meantime: checked in the same transaction.
                let still = TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.devices)
                            .key("hw_id", s(device.hw_id.to_string()))
                            .condition_expression("#st <> :revoked")
                            .expression_attribute_names("#st", "status")
                            .expression_attribute_values(
                                ":revoked",
                                s(DeviceStatus::Revoked.as_str()),
                            )
                            .build()
                            .map_err(db)?,
                    )
                    .build();
                Ok(Planned {
                    answer: Ok(()),
                    writes: vec![write, still],
                    subject: subject.clone(),
                    chain,
                })
            }
        }))
    }

    fn wrapped_key<'a>(
        &'a self,
        release: &'a str,
        serial: Serial,
    ) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            match self
                .get(&self.wrapped, "id", s(wrapped_id(release, serial)))
                .await?
            {
                None => Ok(None),
                Some(item) => Ok(Some(
                    get_b(&item, "wrapped")?
                        .ok_or_else(|| corrupt("wrapped key"))?
                        .to_vec(),
                )),
            }
        })
    }
}
