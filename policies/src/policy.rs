//! The written release policy (docs/policy.md): a TOML file naming the
//! station's keys and their roles, the officers and their approval keys, and
//! per product the slot size, release keys, quorums and version rule.
//!
//! [`Policy::load`] checks everything it can without touching a key and
//! reports every problem at once, each with where it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use firmware::P256PublicKey;
use serde::Deserialize;
use signer::public_key::{load_public_key, public_key_from_pem};
use signer::KeyRef;

/// What a key may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// MCUboot release images only.
    Release,
    /// Provisioning records only.
    Authority,
    /// X.509 certificates only.
    Ca,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Release => "release",
            Role::Authority => "authority",
            Role::Ca => "ca",
        })
    }
}

/// How the security counter must move from one release to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CounterRule {
    /// Above the last release's (the default).
    #[default]
    Increasing,
    /// At least the last release's.
    NonDecreasing,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    #[serde(default)]
    production: bool,
    #[serde(default)]
    require_quorum_keys: bool,
    max_request_validity: Option<String>,
    audit_log: Option<PathBuf>,
    station_key: Option<String>,
    station_key_fingerprint: Option<String>,
    #[serde(default)]
    keys: BTreeMap<String, RawKey>,
    #[serde(default)]
    officers: BTreeMap<String, RawOfficer>,
    #[serde(default)]
    products: BTreeMap<String, RawProduct>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    uri: String,
    role: Role,
    fingerprint: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOfficer {
    public_key: String,
}

/// A product's release key: its name, or a table with its generation and
/// when it retires.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawReleaseKey {
    Name(String),
    Generation(RawGeneration),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeneration {
    key: String,
    generation: u64,
    retired_after: Option<toml::value::Datetime>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProduct {
    slot_size: u64,
    release_keys: Vec<RawReleaseKey>,
    officers: Vec<String>,
    quorum: u64,
    rollback_quorum: u64,
    #[serde(default)]
    security_counter: CounterRule,
    max_major_jump: Option<u64>,
    max_counter_jump: Option<u64>,
    #[serde(default)]
    required_tlvs: Vec<String>,
}

/// A key the policy knows.
#[derive(Debug, Clone)]
pub struct PolicyKey {
    /// Where it lives.
    pub uri: KeyRef,
    /// What it may sign.
    pub role: Role,
    /// SHA-256 of its SubjectPublicKeyInfo.
    pub fingerprint: [u8; 32],
}

/// An officer and the public key their approvals verify with.
#[derive(Debug, Clone)]
pub struct Officer {
    /// The approval key.
    pub public_key: P256PublicKey,
}

/// One product's release rules.
#[derive(Debug, Clone)]
pub struct Product {
    /// Largest signed image, trailer included, in bytes.
    pub slot_size: u32,
    /// Names of the release keys that may sign it.
    pub release_keys: Vec<String>,
    /// Each release key's generation (1 unless the policy says otherwise)
    /// and retirement (docs/key-rotation.md).
    pub generations: BTreeMap<String, KeyGeneration>,
    /// Names of the officers whose approvals count.
    pub officers: Vec<String>,
    /// Distinct officers needed for a release.
    pub quorum: usize,
    /// Distinct officers needed for a rollback or a fast-forward.
    pub rollback_quorum: usize,
    /// How the security counter moves.
    pub security_counter: CounterRule,
    /// Largest major-version step a normal release may take.
    pub max_major_jump: Option<u8>,
    /// Largest security-counter step a normal release may take.
    pub max_counter_jump: Option<u32>,
    /// Protected TLVs every image must carry (imgtool's names, e.g. `SEC_CNT`).
    pub required_tlvs: Vec<String>,
}

/// A release key's place in a product's key rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGeneration {
    /// Its generation: the bootloader key table it belongs to (1, 2, …).
    pub generation: u32,
    /// Unix seconds from which it never signs again, if the policy retires
    /// it on a date.
    pub retired_after: Option<i64>,
}

/// Unix seconds of a TOML date (the end of that day, UTC) or offset
/// date-time; `None` for a local time (ambiguous) or an invalid date.
fn unix_seconds(dt: &toml::value::Datetime) -> Option<i64> {
    let date = dt.date?;
    let (y, m, d) = (
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from 1970-01-01 (the civil-from-days inverse, proleptic Gregorian).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    match (dt.time, dt.offset) {
        (None, None) => Some((days + 1) * 86_400),
        (Some(t), Some(offset)) => {
            let minutes = match offset {
                toml::value::Offset::Z => 0,
                toml::value::Offset::Custom { minutes } => i64::from(minutes),
            };
            Some(
                days * 86_400
                    + i64::from(t.hour) * 3600
                    + i64::from(t.minute) * 60
                    + i64::from(t.second)
                    - minutes * 60,
            )
        }
        _ => None,
    }
}

/// A checked policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Its name, in audit entries.
    pub name: String,
    /// A production policy refuses `file:` keys, and checks on every use that
    /// a release, CA or authority key was generated in its store, never
    /// extractable and sign-only.
    pub production: bool,
    /// Release, CA and authority keys must sit in quorum-unlocked tokens
    /// (`docs/quorum.md`); KMS keys are refused.
    pub require_quorum_keys: bool,
    /// The longest a release request may be valid for, in seconds.
    pub max_request_validity: Option<i64>,
    /// The audit log (relative paths are relative to the policy file).
    pub audit_log: PathBuf,
    /// The key that signs the log's checkpoints.
    pub station_key: Option<KeyRef>,
    /// The station key's fingerprint (SHA-256 of its SPKI): a key that
    /// answers at the URI but is another key is refused.
    pub station_key_fingerprint: Option<[u8; 32]>,
    /// Keys by name.
    pub keys: BTreeMap<String, PolicyKey>,
    /// Officers by name.
    pub officers: BTreeMap<String, Officer>,
    /// Products by name.
    pub products: BTreeMap<String, Product>,
}

/// One thing wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `products.sensor.quorum`, `keys.release`, or the file.
    pub at: String,
    /// What is wrong and what would be right.
    pub message: String,
}

/// Everything wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The file.
    pub path: PathBuf,
    /// Each problem.
    pub problems: Vec<Problem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy {}: {} problem{}",
            self.path.display(),
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.at, p.message)?;
        }
        Ok(())
    }
}

/// Parse a fingerprint: `sha256:` and 64 hex digits (the key ID
/// `keytool key getpub --json` prints).
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex_part = s.strip_prefix("sha256:")?;
    let bytes = hex::decode(hex_part).ok()?;
    bytes.try_into().ok()
}

/// Format a key's fingerprint as the policy writes it.
pub fn fingerprint(key: &P256PublicKey) -> String {
    format!("sha256:{}", hex::encode(key.key_id()))
}

/// [`fingerprint`] for a key of any image key type: the SHA-256 of the DER
/// MCUboot embeds (for P-256, the same).
pub fn image_fingerprint(key: &firmware::image::AnyImageKey) -> String {
    format!(
        "sha256:{}",
        hex::encode(signer::public_key::image_key_id(key))
    )
}

struct Collector(Vec<Problem>);

impl Collector {
    fn add(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            at: at.into(),
            message: message.into(),
        });
    }
}

impl Policy {
    /// Read and check the policy at `path`.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let fail = |at: &str, message: String| PolicyError {
            path: path.to_owned(),
            problems: vec![Problem {
                at: at.into(),
                message,
            }],
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail("file", e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|problems| PolicyError {
            path: path.to_owned(),
            problems,
        })
    }

    /// Parse and check policy text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, Vec<Problem>> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or_else(
                || "file".to_owned(),
                |s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                },
            );
            vec![Problem {
                at,
                message: e.message().trim().to_owned(),
            }]
        })?;
        let mut c = Collector(Vec::new());
        let policy = check(raw, base, &mut c);
        if c.0.is_empty() {
            Ok(policy)
        } else {
            Err(c.0)
        }
    }

    /// The key with this fingerprint, by name.
    pub fn key_by_fingerprint(&self, fp: &[u8; 32]) -> Option<(&str, &PolicyKey)> {
        self.keys
            .iter()
            .find(|(_, k)| &k.fingerprint == fp)
            .map(|(n, k)| (n.as_str(), k))
    }

    /// The officer whose approval key has this key ID.
    pub fn officer_by_key_id(&self, id: &[u8; 32]) -> Option<(&str, &Officer)> {
        self.officers
            .iter()
            .find(|(_, o)| &o.public_key.key_id() == id)
            .map(|(n, o)| (n.as_str(), o))
    }

    /// May the key at `uri` with public key `key` sign as `role`? `Ok` with
    /// the key's name, or every reason it may not.
    pub fn check_key(
        &self,
        role: Role,
        uri: &KeyRef,
        key: &P256PublicKey,
    ) -> Result<String, Vec<String>> {
        self.check_image_key(role, uri, &firmware::image::AnyImageKey::P256(*key))
    }

    /// [`Policy::check_key`] for a key of any image key type (release keys).
    pub fn check_image_key(
        &self,
        role: Role,
        uri: &KeyRef,
        key: &firmware::image::AnyImageKey,
    ) -> Result<String, Vec<String>> {
        let key_id = signer::public_key::image_key_id(key);
        let mut why = Vec::new();
        if self.production && matches!(uri, KeyRef::File(_)) {
            why.push(format!(
                "the production policy {:?} refuses file: keys ({uri})",
                self.name
            ));
        }
        let name = match self.key_by_fingerprint(&key_id) {
            None => {
                why.push(format!(
                    "key {uri} (sha256:{}) is not in the policy",
                    hex::encode(key_id)
                ));
                None
            }
            Some((name, k)) if k.role != role => {
                why.push(format!(
                    "key {name:?} is a {} key; it may not sign {}",
                    k.role,
                    what_role_signs(role)
                ));
                None
            }
            Some((name, _)) => Some(name.to_owned()),
        };
        match name {
            Some(n) if why.is_empty() => Ok(n),
            _ => Err(why),
        }
    }
}

/// What a role's signature covers, for messages.
pub fn what_role_signs(role: Role) -> &'static str {
    match role {
        Role::Release => "images",
        Role::Authority => "provisioning records",
        Role::Ca => "certificates",
    }
}

fn check(raw: RawPolicy, base: &Path, c: &mut Collector) -> Policy {
    if raw.name.trim().is_empty() {
        c.add("name", "must not be empty");
    }
    let station_key = raw.station_key.as_deref().and_then(|s| {
        match s.parse::<KeyRef>().map(|k| relative_to(k, base)) {
            Ok(k) => {
                if raw.production && matches!(k, KeyRef::File(_)) {
                    c.add("station_key", "a production policy refuses file: keys");
                }
                Some(k)
            }
            Err(e) => {
                c.add("station_key", e.to_string());
                None
            }
        }
    });

    let max_request_validity = raw.max_request_validity.as_deref().and_then(|d| {
        let v = parse_duration(d);
        if v.is_none() {
            c.add(
                "max_request_validity",
                "expected a number and a unit (s, m, h, d), e.g. \"72h\", at most 366d",
            );
        }
        v
    });
    let station_key_fingerprint = raw.station_key_fingerprint.as_deref().and_then(|f| {
        let fp = parse_fingerprint(f);
        if fp.is_none() {
            c.add(
                "station_key_fingerprint",
                "expected sha256: and 64 hex digits (keytool key getpub --json prints it)",
            );
        }
        fp
    });
    if raw.production && raw.station_key.is_some() && raw.station_key_fingerprint.is_none() {
        c.add(
            "station_key_fingerprint",
            "a production policy pins its station key: whoever could repoint the key's URI \
             could reseal an edited log",
        );
    }
    if raw.production && raw.station_key.is_none() {
        c.add(
            "station_key",
            "a production policy needs a station key: it signs the audit log's checkpoints, so a cut log is detected",
        );
    }
    let mut keys = BTreeMap::new();
    let mut seen_fp: BTreeMap<[u8; 32], String> = BTreeMap::new();
    for (name, k) in raw.keys {
        let at = format!("keys.{name}");
        let uri = match k.uri.parse::<KeyRef>().map(|k| relative_to(k, base)) {
            Ok(u) => Some(u),
            Err(e) => {
                c.add(format!("{at}.uri"), e.to_string());
                None
            }
        };
        if raw.production && matches!(uri, Some(KeyRef::File(_))) {
            c.add(
                format!("{at}.uri"),
                "a production policy refuses file: keys; use pkcs11: or awskms:",
            );
        }
        if raw.require_quorum_keys && matches!(uri, Some(KeyRef::AwsKms(_))) {
            c.add(
                format!("{at}.uri"),
                "require_quorum_keys: a KMS key has no PIN to split among officers; IAM and \
                 key policies decide who may use it, and one administrator can change them \
                 (docs/threat-model.md)",
            );
        }
        let fp = parse_fingerprint(&k.fingerprint);
        if fp.is_none() {
            c.add(
                format!("{at}.fingerprint"),
                "expected sha256: and 64 hex digits (keytool key getpub --json prints it)",
            );
        }
        if let Some(fp) = fp {
            if let Some(other) = seen_fp.insert(fp, name.clone()) {
                c.add(
                    at.clone(),
                    format!("the same key as keys.{other}: one key, one role"),
                );
            }
        }
        if let (Some(uri), Some(fingerprint)) = (uri, fp) {
            keys.insert(
                name,
                PolicyKey {
                    uri,
                    role: k.role,
                    fingerprint,
                },
            );
        }
    }

    let mut officers = BTreeMap::new();
    let mut seen_officer: BTreeMap<[u8; 32], String> = BTreeMap::new();
    for (name, o) in raw.officers {
        let at = format!("officers.{name}.public_key");
        match officer_key(&o.public_key, base) {
            Ok(public_key) => {
                let id = public_key.key_id();
                if let Some(other) = seen_officer.insert(id, name.clone()) {
                    c.add(
                        at,
                        format!("the same key as officers.{other}: two names for one officer would count twice"),
                    );
                } else if seen_fp.contains_key(&id) {
                    c.add(
                        at,
                        "a signing key of the policy; approval keys are separate",
                    );
                }
                officers.insert(name, Officer { public_key });
            }
            Err(e) => c.add(at, e),
        }
    }

    let mut products = BTreeMap::new();
    for (name, p) in raw.products {
        let at = |field: &str| format!("products.{name}.{field}");
        if p.slot_size == 0 || p.slot_size > u64::from(u32::MAX) {
            c.add(at("slot_size"), "must be between 1 and 0xffffffff bytes");
        }
        if p.release_keys.is_empty() {
            c.add(
                at("release_keys"),
                "names no key: nothing could be released",
            );
        }
        let mut release_keys = Vec::new();
        let mut generations = BTreeMap::new();
        for entry in p.release_keys {
            let (k, generation) = match entry {
                RawReleaseKey::Name(k) => (
                    k,
                    KeyGeneration {
                        generation: 1,
                        retired_after: None,
                    },
                ),
                RawReleaseKey::Generation(g) => {
                    let generation = u32::try_from(g.generation).ok().filter(|g| *g > 0);
                    if generation.is_none() {
                        c.add(
                            at("release_keys"),
                            format!("{:?}: generation must be 1 or more", g.key),
                        );
                    }
                    let retired_after = g.retired_after.as_ref().and_then(|d| {
                        let t = unix_seconds(d);
                        if t.is_none() {
                            c.add(
                                at("release_keys"),
                                format!(
                                    "{:?}: retired_after {d} is not a date (2027-01-31) or a \
                                     date-time with an offset (2027-01-31T12:00:00Z)",
                                    g.key
                                ),
                            );
                        }
                        t
                    });
                    (
                        g.key,
                        KeyGeneration {
                            generation: generation.unwrap_or(1),
                            retired_after,
                        },
                    )
                }
            };
            match keys.get(&k) {
                None if !seen_fp.values().any(|n| n == &k) => {
                    c.add(at("release_keys"), format!("{k:?} is not in [keys]"));
                }
                Some(key) if key.role != Role::Release => c.add(
                    at("release_keys"),
                    format!("{k:?} is a {} key; only release keys sign images", key.role),
                ),
                _ => {}
            }
            if generations.insert(k.clone(), generation).is_some() {
                c.add(at("release_keys"), format!("{k:?} is listed twice"));
            }
            release_keys.push(k);
        }
        let distinct: BTreeSet<&String> = p.officers.iter().collect();
        if distinct.len() != p.officers.len() {
            c.add(at("officers"), "names an officer twice");
        }
        for o in &p.officers {
            if !officers.contains_key(o) && !seen_officer.values().any(|n| n == o) {
                c.add(at("officers"), format!("{o:?} is not in [officers]"));
            }
        }
        let n = distinct.len() as u64;
        if p.quorum == 0 || p.quorum > n {
            c.add(
                at("quorum"),
                format!("must be between 1 and the {n} officers named"),
            );
        }
        if p.rollback_quorum <= p.quorum || p.rollback_quorum > n {
            c.add(
                at("rollback_quorum"),
                format!(
                    "must be larger than quorum ({}) and at most the {n} officers named",
                    p.quorum
                ),
            );
        }
        let max_major_jump = p.max_major_jump.and_then(|j| {
            let ok = u8::try_from(j).ok().filter(|j| *j > 0);
            if ok.is_none() {
                c.add(at("max_major_jump"), "must be between 1 and 255");
            }
            ok
        });
        let max_counter_jump = p.max_counter_jump.and_then(|j| {
            let ok = u32::try_from(j).ok().filter(|j| *j > 0);
            if ok.is_none() {
                c.add(at("max_counter_jump"), "must be between 1 and 0xffffffff");
            }
            ok
        });
        let mut required_tlvs = Vec::new();
        for t in &p.required_tlvs {
            match firmware::image::tlv::kind(t) {
                Some(kind) => required_tlvs.push(
                    firmware::image::tlv::name(kind)
                        .unwrap_or(t.as_str())
                        .to_owned(),
                ),
                None => c.add(
                    at("required_tlvs"),
                    format!(
                        "{t:?} is not an MCUboot TLV name (e.g. SEC_CNT, BOOT_RECORD, DEPENDENCY)"
                    ),
                ),
            }
        }
        products.insert(
            name.clone(),
            Product {
                slot_size: u32::try_from(p.slot_size).unwrap_or(0),
                release_keys,
                generations,
                officers: p.officers,
                quorum: usize::try_from(p.quorum).unwrap_or(usize::MAX),
                rollback_quorum: usize::try_from(p.rollback_quorum).unwrap_or(usize::MAX),
                security_counter: p.security_counter,
                max_major_jump,
                max_counter_jump,
                required_tlvs,
            },
        );
    }
    if products.is_empty() {
        c.add("products", "no product: nothing could be released");
    }

    let audit_log = raw
        .audit_log
        .unwrap_or_else(|| PathBuf::from("audit.jsonl"));
    Policy {
        name: raw.name,
        production: raw.production,
        require_quorum_keys: raw.require_quorum_keys,
        max_request_validity,
        audit_log: base.join(audit_log),
        station_key,
        station_key_fingerprint,
        keys,
        officers,
        products,
    }
}

/// Seconds in `90s`, `30m`, `72h`, `7d` (1 s to 366 d).
pub fn parse_duration(s: &str) -> Option<i64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
        .filter(|v| *v > 0 && *v <= 366 * 86_400)
}

/// A relative `file:` key is relative to the policy file, like every path in it.
fn relative_to(key: KeyRef, base: &Path) -> KeyRef {
    match key {
        KeyRef::File(p) if p.is_relative() => KeyRef::File(base.join(p)),
        other => other,
    }
}

/// An officer's approval key: inline PEM, or a PEM file relative to `base`.
fn officer_key(value: &str, base: &Path) -> Result<P256PublicKey, String> {
    if value.trim_start().starts_with("-----BEGIN") {
        return public_key_from_pem(value).map_err(|e| e.to_string());
    }
    let path = base.join(value);
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    load_public_key(&KeyRef::File(path)).map_err(|e| e.to_string())
}
