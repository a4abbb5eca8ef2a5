//! Whether a release may be signed: every rule of the policy checked against
//! the request, its approvals, the image, the key and the product's last
//! release. Pure: no clock, no files, no keys opened; the caller brings them.

use std::collections::BTreeSet;

use firmware::image::AnyImageKey;
use serde::Serialize;
use signer::image::Prebuilt;
use signer::KeyRef;

use crate::history::Release;
use crate::policy::{image_fingerprint, CounterRule, Policy, Product, Role};
use crate::request::RequestFile;

/// Bytes one key's signing adds to an unsigned image at most: KEYHASH (4 +
/// up to 64) and a signature (4 + up to 384, RSA-3072).
pub const SIGNATURE_TLVS_MAX: u64 = 4 + 64 + 4 + 384;

/// A key that would sign.
#[derive(Debug, Clone, Copy)]
pub struct CandidateKey<'a> {
    /// Its reference.
    pub key_ref: &'a KeyRef,
    /// Its public key.
    pub key: &'a AnyImageKey,
}

/// What is to be signed.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The request and its approvals.
    pub request: &'a RequestFile,
    /// The unsigned image, parsed.
    pub image: &'a Prebuilt,
    /// The keys that would sign, in signature order (two for an image both
    /// key generations accept).
    pub keys: &'a [CandidateKey<'a>],
}

/// One rule's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleResult {
    /// The rule's name (docs/policy.md lists them).
    pub rule: &'static str,
    /// Whether it holds.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

/// What kind of release this is against the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseKind {
    /// The product's first release through this station.
    First,
    /// A forward step within the version rule.
    Normal,
    /// Not above the last version, or the counter not advancing as the rule
    /// asks: needs the rollback quorum.
    Rollback,
    /// A larger step than the policy's maximum jump: needs the rollback quorum.
    FastForward,
    /// The first image signed only by a newer key generation than the fleet
    /// has been sent: devices still on the old key table cannot boot it, so
    /// it needs the rollback quorum (docs/key-rotation.md).
    KeyRotation,
}

/// The verdict on a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// Every rule, in order.
    pub rules: Vec<RuleResult>,
    /// The kind of release.
    pub kind: ReleaseKind,
    /// Approvals needed for it.
    pub needed: usize,
    /// The officers whose approvals count, once each.
    pub approvers: Vec<String>,
}

impl Evaluation {
    /// Whether every rule holds.
    pub fn passed(&self) -> bool {
        self.rules.iter().all(|r| r.passed)
    }

    /// The rules that failed, as `rule: detail`.
    pub fn failures(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("{}: {}", r.rule, r.detail))
            .collect()
    }
}

struct Rules(Vec<RuleResult>);

impl Rules {
    /// A rule that holds when nothing is wrong: `ok` describes the pass,
    /// otherwise every reason is listed.
    fn verdict(&mut self, rule: &'static str, why: &[String], ok: impl FnOnce() -> String) {
        let passed = why.is_empty();
        let detail = if passed { ok() } else { why.join("; ") };
        self.add(rule, passed, detail);
    }

    fn add(&mut self, rule: &'static str, passed: bool, detail: impl Into<String>) {
        self.0.push(RuleResult {
            rule,
            passed,
            detail: detail.into(),
        });
    }
}

/// Evaluate `candidate` under `policy`, given the product's last release and
/// the time `now` (Unix seconds).
pub fn evaluate(
    policy: &Policy,
    candidate: &Candidate<'_>,
    last: Option<&Release>,
    now: i64,
) -> Evaluation {
    let request = &candidate.request.request;
    let mut rules = Rules(Vec::new());
    let product = policy.products.get(&request.product);
    match product {
        Some(_) => rules.add("product", true, request.product.clone()),
        None => rules.add(
            "product",
            false,
            format!(
                "{:?} is not in the policy (products: {})",
                request.product,
                policy
                    .products
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }

    release_key(policy, product, candidate, &mut rules);
    image_matches(candidate, &mut rules);

    if let Some(p) = product {
        let missing: Vec<&str> = p
            .required_tlvs
            .iter()
            .filter(|t| !candidate.image.protected_tlvs.contains(t))
            .map(String::as_str)
            .collect();
        rules.add(
            "required-tlvs",
            missing.is_empty(),
            if missing.is_empty() {
                format!("present: {}", p.required_tlvs.join(", "))
            } else {
                format!("missing from the protected TLVs: {}", missing.join(", "))
            },
        );
        // The whole file counts (padding and trailer go into the slot too).
        let signed = (candidate.image.size as u64
            + SIGNATURE_TLVS_MAX * candidate.keys.len() as u64)
            .max(candidate.image.file_size as u64);
        rules.add(
            "slot-size",
            signed <= u64::from(p.slot_size),
            format!(
                "signed image up to {signed:#x} bytes, slot {:#x}",
                p.slot_size
            ),
        );
    }

    if let Some(cap) = policy.max_request_validity {
        let validity = request.expires.saturating_sub(request.created);
        rules.add(
            "validity",
            validity <= cap,
            format!("valid for {validity} s; the policy allows at most {cap} s"),
        );
    }
    let live = now < request.expires;
    rules.add(
        "unexpired",
        live,
        if live {
            format!("expires in {} s", request.expires - now)
        } else {
            format!(
                "expired {} s ago: request a new release",
                now - request.expires
            )
        },
    );

    let (mut kind, mut needed) = version_rule(product, candidate.image, last, &mut rules);
    if let Some(p) = product {
        if generation_rule(p, candidate, last, now, &mut rules) && needed < p.rollback_quorum {
            kind = ReleaseKind::KeyRotation;
            needed = p.rollback_quorum;
        }
    }
    let approvers = approvals(policy, product, candidate.request, needed, kind, &mut rules);
    Evaluation {
        rules: rules.0,
        kind,
        needed,
        approvers,
    }
}

fn release_key(policy: &Policy, product: Option<&Product>, c: &Candidate<'_>, rules: &mut Rules) {
    let request = &c.request.request;
    let wanted = request.release_keys();
    let mut why = Vec::new();
    if c.keys.len() != wanted.len() {
        why.push(format!(
            "the request names {} release key(s) ({}), {} would sign",
            wanted.len(),
            wanted
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
            c.keys.len()
        ));
    }
    let mut used = Vec::new();
    for (i, k) in c.keys.iter().enumerate() {
        match policy.check_image_key(Role::Release, k.key_ref, k.key) {
            Ok(name) => {
                if let Some(p) = product {
                    if !p.release_keys.contains(&name) {
                        why.push(format!(
                            "{name:?} may not sign {} (its release keys: {})",
                            request.product,
                            p.release_keys.join(", ")
                        ));
                    }
                }
            }
            Err(w) => why.extend(w),
        }
        let fp = image_fingerprint(k.key);
        if let Some((name, wanted_fp)) = wanted.get(i) {
            if *wanted_fp != fp {
                why.push(format!(
                    "the request names release key {name} ({wanted_fp}) {}, not this key ({fp})",
                    if i == 0 { "first" } else { "second" }
                ));
            }
        }
        used.push(fp);
    }
    rules.verdict("release-key", &why, || {
        wanted
            .iter()
            .zip(&used)
            .map(|((n, _), fp)| format!("{n} ({fp})"))
            .collect::<Vec<_>>()
            .join(", ")
    });
}

/// Key generations (docs/key-rotation.md): a retired key never signs
/// again, retired by the policy's date or by the log, once a release signed
/// only by newer generations went out. Returns whether this release is the
/// first signed only by a newer generation than the fleet has been sent
/// (it then needs the rollback quorum).
fn generation_rule(
    p: &Product,
    c: &Candidate<'_>,
    last: Option<&Release>,
    now: i64,
    rules: &mut Rules,
) -> bool {
    let request = &c.request.request;
    let generation = |name: &str| p.generations.get(name).map(|g| g.generation);
    let names: Vec<&str> = request.release_keys().iter().map(|(n, _)| *n).collect();
    // The fleet's floor: the newest generation a past release was signed
    // with alone (the lowest of its keys).
    let mut floor = None::<u32>;
    for keys in last.map(|l| l.key_history.as_slice()).unwrap_or_default() {
        if let Some(low) = keys.iter().filter_map(|k| generation(k)).min() {
            floor = floor.max(Some(low));
        }
    }
    let mut why = Vec::new();
    let mut gens = Vec::new();
    for name in &names {
        let Some(g) = p.generations.get(*name) else {
            continue; // the release-key rule reports it
        };
        gens.push(g.generation);
        if let Some(t) = g.retired_after {
            if now >= t {
                why.push(format!(
                    "{name:?} (generation {}) retired {} s ago (retired_after in the policy)",
                    g.generation,
                    now - t
                ));
            }
        }
        if let Some(f) = floor {
            if g.generation < f {
                why.push(format!(
                    "{name:?} is generation {}, retired: the log shows a release signed only by \
                     generation {f} or newer",
                    g.generation
                ));
            }
        }
    }
    // Signed only by generations newer than the fleet's floor: devices
    // whose key table holds only the floor's generation cannot boot it.
    let lowest = gens.iter().min().copied();
    let rotation = matches!((lowest, floor), (Some(low), Some(f)) if low > f);
    rules.verdict("key-generation", &why, || {
        let gens = gens
            .iter()
            .map(|g| format!("generation {g}"))
            .collect::<Vec<_>>()
            .join(" + ");
        match (rotation, floor) {
            (true, Some(f)) => format!(
                "{gens}: the first release without generation {f}; a key rotation needing the \
                 rollback quorum ({})",
                p.rollback_quorum
            ),
            (_, Some(f)) => format!("{gens}; the fleet is on generation {f} or newer"),
            (_, None) => format!("{gens}; no release yet"),
        }
    });
    rotation
}

fn image_matches(c: &Candidate<'_>, rules: &mut Rules) {
    let request = &c.request.request;
    let image = c.image;
    let mut why = Vec::new();
    if request.digest().as_deref() != Some(image.digest.as_bytes()) {
        why.push(format!(
            "digest {} is not the requested {}",
            hex::encode(image.digest),
            request.image_digest
        ));
    }
    if request.parsed_version() != Some(image.version) {
        why.push(format!(
            "version {} is not the requested {}",
            image.version, request.version
        ));
    }
    if request.security_counter != image.security_counter {
        why.push(format!(
            "security counter {:?} is not the requested {:?}",
            image.security_counter, request.security_counter
        ));
    }
    if request.image_size != image.size as u64 {
        why.push(format!(
            "size {} is not the requested {}",
            image.size, request.image_size
        ));
    }
    rules.verdict("image-matches-request", &why, || {
        format!(
            "sha256:{} version {}",
            request.image_digest, request.version
        )
    });
}

/// Classify against the last release; the rule itself fails only when the
/// security counter would go down, which no approval can make safe.
fn version_rule(
    product: Option<&Product>,
    image: &Prebuilt,
    last: Option<&Release>,
    rules: &mut Rules,
) -> (ReleaseKind, usize) {
    let Some(p) = product else {
        rules.add("version", false, "no product");
        return (ReleaseKind::Normal, usize::MAX);
    };
    let Some(last) = last else {
        rules.add(
            "version",
            true,
            format!("{}: the first release of this product", image.version),
        );
        return (ReleaseKind::First, p.quorum);
    };
    if hex::encode(image.digest) == last.digest {
        rules.add(
            "version",
            true,
            format!(
                "{}: the same image as the last release (log line {}), signed again",
                image.version, last.seq
            ),
        );
        return (ReleaseKind::Normal, p.quorum);
    }
    let mut notes = Vec::new();
    let mut kind = ReleaseKind::Normal;
    let mut passed = true;
    if image.version <= last.version {
        kind = ReleaseKind::Rollback;
        notes.push(format!(
            "{} is not above the last release {}",
            image.version, last.version
        ));
    }
    match (image.security_counter, last.security_counter) {
        (Some(new), Some(old)) if new < old => {
            passed = false;
            notes.push(format!(
                "security counter {new} is below the last release's {old}: devices refuse it"
            ));
        }
        (Some(new), Some(old)) if new == old && p.security_counter == CounterRule::Increasing => {
            kind = ReleaseKind::Rollback;
            notes.push(format!("security counter {new} does not increase"));
        }
        (Some(new), Some(old)) => {
            if let Some(max) = p.max_counter_jump {
                if new - old > max && kind == ReleaseKind::Normal {
                    kind = ReleaseKind::FastForward;
                    notes.push(format!(
                        "security counter jumps by {} (policy maximum {max})",
                        new - old
                    ));
                }
            }
        }
        (None, Some(old)) => {
            passed = false;
            notes.push(format!("no security counter, the last release had {old}"));
        }
        _ => {}
    }
    if let Some(max) = p.max_major_jump {
        let jump = image.version.major.saturating_sub(last.version.major);
        if jump > max && kind == ReleaseKind::Normal {
            kind = ReleaseKind::FastForward;
            notes.push(format!(
                "major version jumps by {jump} (policy maximum {max})"
            ));
        }
    }
    let needed = match kind {
        ReleaseKind::First | ReleaseKind::Normal => p.quorum,
        ReleaseKind::Rollback | ReleaseKind::FastForward | ReleaseKind::KeyRotation => {
            p.rollback_quorum
        }
    };
    let detail = if notes.is_empty() {
        format!(
            "{} after {} (log line {})",
            image.version, last.version, last.seq
        )
    } else {
        let what = match kind {
            ReleaseKind::Rollback => "a rollback",
            ReleaseKind::FastForward => "a fast-forward",
            _ => "refused",
        };
        format!(
            "{}; {what} needing {needed} approvals (last release {} at log line {})",
            notes.join("; "),
            last.version,
            last.seq
        )
    };
    rules.add("version", passed, detail);
    (kind, needed)
}

fn approvals(
    policy: &Policy,
    product: Option<&Product>,
    file: &RequestFile,
    needed: usize,
    kind: ReleaseKind,
    rules: &mut Rules,
) -> Vec<String> {
    let Some(p) = product else {
        rules.add("approvals", false, "no product");
        return Vec::new();
    };
    let mut counted: BTreeSet<String> = BTreeSet::new();
    let (mut invalid, mut outsiders, mut repeats) = (0usize, Vec::new(), 0usize);
    for a in &file.approvals {
        let officer = crate::policy::parse_fingerprint(&a.key_fingerprint)
            .and_then(|fp| policy.officer_by_key_id(&fp));
        match officer {
            None => outsiders.push(a.officer.clone()),
            Some((name, o)) => {
                if !p.officers.iter().any(|n| n == name) {
                    outsiders.push(name.to_owned());
                } else if !a.verifies(&file.request, &o.public_key) {
                    invalid += 1;
                } else if !counted.insert(name.to_owned()) {
                    repeats += 1;
                }
            }
        }
    }
    let mut detail = format!(
        "{} of {needed} needed{}",
        counted.len(),
        match kind {
            ReleaseKind::Rollback => " for a rollback",
            ReleaseKind::FastForward => " for a fast-forward",
            ReleaseKind::KeyRotation => " for a key rotation",
            _ => "",
        }
    );
    if !counted.is_empty() {
        detail.push_str(&format!(
            " ({})",
            counted.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if invalid > 0 {
        detail.push_str(&format!(
            "; {invalid} signature(s) not over this request (another image, version or product?)"
        ));
    }
    if repeats > 0 {
        detail.push_str(&format!(
            "; {repeats} repeat(s) by the same officer, counted once"
        ));
    }
    if !outsiders.is_empty() {
        detail.push_str(&format!(
            "; not officers of {}: {}",
            file.request.product,
            outsiders.join(", ")
        ));
    }
    rules.add("approvals", counted.len() >= needed, detail);
    counted.into_iter().collect()
}
