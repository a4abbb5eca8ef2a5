//! Whether a release may be signed: every rule of the policy checked against
//! the request, its approvals, the image, the key and the product's last
//! release. Pure: no clock, no files, no keys opened; the caller brings them.

use std::collections::BTreeSet;

use firmware::P256PublicKey;
use serde::Serialize;
use signer::image::Prebuilt;
use signer::KeyRef;

use crate::history::Release;
use crate::policy::{fingerprint, CounterRule, Policy, Product, Role};
use crate::request::RequestFile;

/// Bytes signing adds to an unsigned image at most: KEYHASH (4 + 32) and a
/// DER ECDSA P-256 signature (4 + up to 72).
pub const SIGNATURE_TLVS_MAX: u64 = 4 + 32 + 4 + 72;

/// What is to be signed.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The request and its approvals.
    pub request: &'a RequestFile,
    /// The unsigned image, parsed.
    pub image: &'a Prebuilt,
    /// The key reference that would sign.
    pub key_ref: &'a KeyRef,
    /// Its public key.
    pub key: &'a P256PublicKey,
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
        let signed = (candidate.image.size as u64 + SIGNATURE_TLVS_MAX)
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

    let (kind, needed) = version_rule(product, candidate.image, last, &mut rules);
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
    let mut why = match policy.check_key(Role::Release, c.key_ref, c.key) {
        Ok(name) => {
            let mut why = Vec::new();
            if let Some(p) = product {
                if !p.release_keys.contains(&name) {
                    why.push(format!(
                        "{name:?} may not sign {} (its release keys: {})",
                        request.product,
                        p.release_keys.join(", ")
                    ));
                }
            }
            why
        }
        Err(why) => why,
    };
    let used = fingerprint(c.key);
    if request.release_key_fingerprint != used {
        why.push(format!(
            "the request names release key {} ({}), not this key ({used})",
            request.release_key, request.release_key_fingerprint
        ));
    }
    rules.verdict("release-key", &why, || {
        format!("{} ({used})", request.release_key)
    });
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
        ReleaseKind::Rollback | ReleaseKind::FastForward => p.rollback_quorum,
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
