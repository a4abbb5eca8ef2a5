//! Release workflows of the station, shared by the command line and the TUI:
//! requesting a release, approving it (bound to the request the officer was
//! shown), evaluating it against the policy and signing it (with a plain
//! key, or a quorum-unlocked one whose anchor of the audit log is checked and
//! moved). The front ends only parse, prompt, show and print.

use std::path::Path;

use policies::evaluate::{evaluate, Candidate, CandidateKey, Evaluation};
use policies::history::{last_releases, release_subjects, RELEASE_ACTION};
use policies::policy::{fingerprint, parse_fingerprint, Policy};
use policies::request::{Approval, ReleaseRequest, RequestFile, REQUEST_FORMAT};
use signer::image::{is_hex_path, sign_prebuilt, Prebuilt, PublicKeyFormat};
use signer::{intel_hex, open_signer, KeyRef};

use crate::station::error::StationError;
use crate::station::session::Session;

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An image file: its bytes and, for Intel HEX, its address.
pub(crate) fn read_image(path: &Path) -> Result<(Vec<u8>, Option<u32>), StationError> {
    let bytes = std::fs::read(path)
        .map_err(|e| StationError::usage_msg(format!("cannot read {}: {e}", path.display())))?;
    if !is_hex_path(path) {
        return Ok((bytes, None));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| StationError::usage_msg(format!("{}: not Intel HEX text", path.display())))?;
    let hex = intel_hex::parse(&text)
        .map_err(|e| StationError::usage_msg(format!("{}: {e}", path.display())))?;
    Ok((hex.data, hex.base_addr))
}

pub(crate) fn prebuilt(path: &Path) -> Result<(Vec<u8>, Option<u32>, Prebuilt), StationError> {
    let (bytes, base) = read_image(path)?;
    let info = Prebuilt::parse(&bytes)
        .map_err(|e| StationError::usage_msg(format!("{}: {e}", path.display())))?;
    Ok((bytes, base, info))
}

pub(crate) fn read_request(path: &Path) -> Result<RequestFile, StationError> {
    let bytes = std::fs::read(path)
        .map_err(|e| StationError::usage_msg(format!("cannot read {}: {e}", path.display())))?;
    RequestFile::parse(&bytes)
        .map_err(|e| StationError::usage_msg(format!("{}: {e}", path.display())))
}

pub(crate) fn request_subjects(r: &ReleaseRequest) -> Vec<String> {
    let mut s = vec![
        format!("product:{}", r.product),
        format!("version:{}", r.version),
    ];
    if let Some(c) = r.security_counter {
        s.push(format!("security_counter:{c}"));
    }
    s.push(format!("sha256:{}", r.image_digest));
    s
}

/// Write a release request for `image` to `output` and audit it; returns the
/// request and the product's quorum.
pub(crate) fn request_release(
    policy_path: &Path,
    image_path: &Path,
    product_name: &str,
    release_keys: &[String],
    valid_for: i64,
    output: &Path,
) -> Result<(RequestFile, usize), StationError> {
    let mut session = Session::open(policy_path)?;
    let (_, _, image) = prebuilt(image_path)?;
    let product = session
        .policy
        .products
        .get(product_name)
        .cloned()
        .ok_or_else(|| {
            StationError::usage_msg(format!(
                "product {product_name:?} is not in the policy (products: {})",
                session
                    .policy
                    .products
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let key_names: Vec<String> = match (release_keys, product.release_keys.as_slice()) {
        ([], [only]) => vec![only.clone()],
        ([], many) => {
            return Err(StationError::usage_msg(format!(
                "product {product_name:?} has several release keys; pick one (or two, for an \
                 image both key generations accept) with --release-key ({})",
                many.join(", ")
            )))
        }
        (named, _) if named.len() > 2 => {
            return Err(StationError::usage_msg(
                "at most two release keys sign one image (the old and the new generation)",
            ))
        }
        ([a, b], _) if a == b => {
            return Err(StationError::usage_msg(format!(
                "--release-key {a:?} is given twice"
            )))
        }
        (named, _) => named.to_vec(),
    };
    let mut fingerprints = Vec::new();
    for key_name in &key_names {
        if !product.release_keys.contains(key_name) {
            return Err(StationError::usage_msg(format!(
                "{key_name:?} is not a release key of {product_name:?} ({})",
                product.release_keys.join(", ")
            )));
        }
        let key = session.policy.keys.get(key_name).ok_or_else(|| {
            StationError::usage_msg(format!("{key_name:?} is not in the policy's [keys]"))
        })?;
        fingerprints.push(format!("sha256:{}", hex::encode(key.fingerprint)));
    }
    if let Some(cap) = session.policy.max_request_validity {
        if valid_for > cap {
            return Err(StationError::usage_msg(format!(
                "--valid-for {valid_for} s: the policy allows requests of at most {cap} s"
            )));
        }
    }
    let created = now();
    let request = ReleaseRequest {
        format: REQUEST_FORMAT.into(),
        product: product_name.to_owned(),
        image_digest: hex::encode(image.digest),
        image_size: image.size as u64,
        version: image.version.to_string(),
        security_counter: image.security_counter,
        release_key: key_names[0].clone(),
        release_key_fingerprint: fingerprints[0].clone(),
        second_release_key: key_names.get(1).cloned(),
        second_release_key_fingerprint: fingerprints.get(1).cloned(),
        created,
        expires: created + valid_for,
    };
    let file = RequestFile {
        request,
        approvals: Vec::new(),
    };
    signer::atomic::write(output, &file.to_bytes()).map_err(StationError::failed)?;
    session.record("release.request", request_subjects(&file.request), "ok")?;
    session.close()?;
    Ok((file, product.quorum))
}

/// Add the approval of the officer whose key `officer_key` is to the request
/// at `request_path`, audited; refusals are audited too.
pub(crate) fn approve_release(
    policy_path: &Path,
    request_path: &Path,
    officer_key: &KeyRef,
    shown: Option<[u8; 32]>,
) -> Result<(String, Approval, RequestFile), StationError> {
    let mut session = Session::open(policy_path)?;
    let mut file = read_request(request_path)?;
    if shown.is_some_and(|d| d != file.request.approval_digest()) {
        return Err(session.refuse(
            "release.approve",
            request_subjects(&file.request),
            &["the request changed since it was shown to the officer: look at it again".into()],
        ));
    }
    let key = open_signer(officer_key).map_err(StationError::usage)?;
    let public = key.public_key().map_err(StationError::failed)?;
    let subjects = request_subjects(&file.request);
    let officer = session
        .policy
        .officer_by_key_id(&public.key_id())
        .map(|(n, _)| n.to_owned());
    let Some(officer) = officer else {
        return Err(session.refuse(
            "release.approve",
            subjects,
            &[format!(
                "the key {} ({}) is no officer's approval key",
                officer_key,
                fingerprint(&public)
            )],
        ));
    };
    session.set_actor(officer.clone());
    let mut why = Vec::new();
    if session.policy.production && matches!(officer_key, KeyRef::File(_)) {
        why.push(format!(
            "the production policy {:?} refuses file: keys; approve with the officer's token",
            session.policy.name
        ));
    }
    match session.policy.products.get(&file.request.product) {
        Some(p) if !p.officers.contains(&officer) => why.push(format!(
            "{officer} is not an officer of {}",
            file.request.product
        )),
        None => why.push(format!(
            "product {:?} is not in the policy",
            file.request.product
        )),
        _ => {}
    }
    if file.request.expires <= now() {
        why.push("the request has expired: request a new release".into());
    }
    if file
        .approvals
        .iter()
        .any(|a| parse_fingerprint(&a.key_fingerprint) == Some(public.key_id()))
    {
        why.push(format!("{officer} has already approved this request"));
    }
    if !why.is_empty() {
        return Err(session.refuse("release.approve", subjects, &why));
    }
    let approval = file
        .request
        .approve(&officer, key.as_ref(), now())
        .map_err(StationError::failed)?;
    file.approvals.push(approval.clone());
    signer::atomic::write(request_path, &file.to_bytes()).map_err(StationError::failed)?;
    session.record("release.approve", subjects, "ok")?;
    session.close()?;
    Ok((officer, approval, file))
}

/// Everything a release evaluation needs, read and opened.
pub(crate) struct Prepared {
    file: RequestFile,
    bytes: Vec<u8>,
    base: Option<u32>,
    image: Prebuilt,
    keys: Vec<PreparedKey>,
}

/// One signing key, opened.
pub(crate) struct PreparedKey {
    key_ref: KeyRef,
    key: Box<dyn signer::keys::Signer>,
    public: firmware::image::AnyImageKey,
    /// The quorum token the key is in, unlocked, if it is one.
    unlocked: Option<signer::keys::quorum::Unlocked>,
}

impl Prepared {
    fn candidate_keys(&self) -> Vec<CandidateKey<'_>> {
        self.keys
            .iter()
            .map(|k| CandidateKey {
                key_ref: &k.key_ref,
                key: &k.public,
            })
            .collect()
    }
}

/// Open `key`: through the officers' shares when it sits in a quorum token
/// and `unlock` names them, else with its PIN source.
fn open_release_key(
    key: &KeyRef,
    unlock: &[signer::keys::quorum::Officer],
) -> Result<PreparedKey, StationError> {
    let (signer, unlocked) = match key {
        KeyRef::Pkcs11(uri) if !unlock.is_empty() => {
            let token = signer::keys::quorum::unlock(uri, unlock).map_err(StationError::usage)?;
            (token.signer(key).map_err(StationError::usage)?, Some(token))
        }
        _ if !unlock.is_empty() => {
            return Err(StationError::usage_msg(
                "--unlock: only a pkcs11: key can be in a quorum-unlocked token",
            ))
        }
        _ => (open_signer(key).map_err(StationError::usage)?, None),
    };
    let public = signer.image_key().map_err(StationError::failed)?;
    Ok(PreparedKey {
        key_ref: key.clone(),
        key: signer,
        public,
        unlocked,
    })
}

pub(crate) fn prepare(
    request: &Path,
    image: &Path,
    keys: &[KeyRef],
    unlock: &[signer::keys::quorum::Officer],
) -> Result<Prepared, StationError> {
    if keys.is_empty() || keys.len() > 2 {
        return Err(StationError::usage_msg(
            "give one release key, or two for an image both key generations accept",
        ));
    }
    let file = read_request(request)?;
    let (bytes, base, image) = prebuilt(image)?;
    let keys = keys
        .iter()
        .map(|k| open_release_key(k, unlock))
        .collect::<Result<_, _>>()?;
    Ok(Prepared {
        file,
        bytes,
        base,
        image,
        keys,
    })
}

/// The policy's station key's public half, for verifying the log.
pub(crate) fn station_public(
    policy: &Policy,
) -> Result<Option<firmware::P256PublicKey>, StationError> {
    policy
        .station_key
        .as_ref()
        .map(signer::public_key::load_public_key)
        .transpose()
        .map_err(|e| StationError::failed(anyhow::anyhow!("station key: {e}")))
}

pub(crate) fn judge(
    policy: &Policy,
    station: Option<&firmware::P256PublicKey>,
    p: &Prepared,
) -> Result<Evaluation, StationError> {
    judge_candidate(
        policy,
        station,
        &Candidate {
            request: &p.file,
            image: &p.image,
            keys: &p.candidate_keys(),
        },
    )
}

fn judge_candidate(
    policy: &Policy,
    station: Option<&firmware::P256PublicKey>,
    candidate: &Candidate<'_>,
) -> Result<Evaluation, StationError> {
    let history = last_releases(&policy.audit_log, station).map_err(StationError::failed)?;
    Ok(evaluate(
        policy,
        candidate,
        history.get(&candidate.request.request.product),
        now(),
    ))
}

/// The policy's verdict on signing `image` for `request` with `key`, without
/// signing or writing anything.
pub(crate) fn evaluate_release(
    policy_path: &Path,
    request: &Path,
    image: &Path,
    keys: &[KeyRef],
    unlock: &[signer::keys::quorum::Officer],
) -> Result<Evaluation, StationError> {
    let policy = Policy::load(policy_path).map_err(StationError::usage)?;
    let station = station_public(&policy)?;
    if unlock.is_empty() {
        // A verdict needs the key's public half only, read without logging
        // in: a key in a quorum-unlocked token is judged before anyone
        // unlocks it.
        let file = read_request(request)?;
        let (_, _, image) = prebuilt(image)?;
        let publics = keys
            .iter()
            .map(signer::public_key::load_image_key)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StationError::usage)?;
        let candidate_keys: Vec<CandidateKey<'_>> = keys
            .iter()
            .zip(&publics)
            .map(|(key_ref, key)| CandidateKey { key_ref, key })
            .collect();
        return judge_candidate(
            &policy,
            station.as_ref(),
            &Candidate {
                request: &file,
                image: &image,
                keys: &candidate_keys,
            },
        );
    }
    let p = prepare(request, image, keys, unlock)?;
    judge(&policy, station.as_ref(), &p)
}

/// A release that was signed.
#[derive(Debug)]
pub(crate) struct Signed {
    pub(crate) product: String,
    pub(crate) version: String,
    pub(crate) release_key: String,
    pub(crate) approvers: Vec<String>,
    /// The audit line that records it.
    pub(crate) seq: u64,
}

/// What `sign_release` did: the evaluation (when it got that far) and the
/// signature or the refusal.
#[derive(Debug)]
pub(crate) struct SignOutcome {
    pub(crate) evaluation: Option<Evaluation>,
    pub(crate) result: Result<Signed, StationError>,
}

/// Sign `image` into `output` if, and only if, the policy passes; every
/// outcome is audited and nothing is written on a refusal.
pub(crate) fn sign_release(
    policy_path: &Path,
    request: &Path,
    image: &Path,
    (keys, unlock): (&[KeyRef], &[signer::keys::quorum::Officer]),
    output: &Path,
    format: PublicKeyFormat,
) -> SignOutcome {
    let fail = |f: StationError| SignOutcome {
        evaluation: None,
        result: Err(f),
    };
    let session = match Session::open(policy_path) {
        Ok(s) => s,
        Err(f) => return fail(f),
    };
    let p = match prepare(request, image, keys, unlock) {
        Ok(p) => p,
        Err(f) => {
            let reason = f.to_string();
            return fail(session.refuse(RELEASE_ACTION, vec![], &[reason]));
        }
    };
    let mut held = Vec::new();
    for k in &p.keys {
        held.extend(crate::station::session::key_storage_problems(
            &session.policy,
            k.key.as_ref(),
        ));
        if let Some(token) = &k.unlocked {
            match session.check_anchor(token) {
                Ok(true) => {}
                Ok(false) if session.policy.production => held.push(
                    "the release token holds no anchor of this station's audit log (keytool \
                     ceremony init or keytool audit init --anchor-token anchors it): the \
                     history could have been reset"
                        .into(),
                ),
                Ok(false) => {}
                Err(why) => held.extend(why),
            }
        }
    }
    let eval = match judge(&session.policy, session.station_public.as_ref(), &p) {
        Ok(e) => e,
        Err(f) => return fail(f),
    };
    let result = sign_judged(session, &p, &eval, &held, output, format);
    SignOutcome {
        evaluation: Some(eval),
        result,
    }
}

pub(crate) fn sign_judged(
    mut session: Session,
    p: &Prepared,
    eval: &Evaluation,
    held: &[String],
    output: &Path,
    format: PublicKeyFormat,
) -> Result<Signed, StationError> {
    let request = &p.file.request;
    let key_names: Vec<&str> = request.release_keys().iter().map(|(n, _)| *n).collect();
    let mut subjects = release_subjects(
        &request.product,
        &p.image.version,
        p.image.security_counter,
        &hex::encode(p.image.digest),
        &key_names,
    );
    if !eval.passed() || !held.is_empty() {
        let mut why = eval.failures();
        why.extend(held.iter().cloned());
        return Err(session.refuse(RELEASE_ACTION, subjects, &why));
    }
    let signers: Vec<&dyn signer::keys::Signer> = p.keys.iter().map(|k| k.key.as_ref()).collect();
    let signed = sign_prebuilt(&p.bytes, &signers, format)?;
    let out_bytes = if is_hex_path(output) {
        let base = p.base.ok_or_else(|| {
            StationError::usage_msg("a .hex output needs a .hex input (its address)")
        })?;
        intel_hex::write(&[(base, &signed.bytes)])
            .map_err(StationError::failed)?
            .into_bytes()
    } else {
        signed.bytes
    };
    subjects.push(format!("approved-by:{}", eval.approvers.join(",")));
    // The signed image is committed only once the log holds its entry and
    // the checkpoint that covers it; a quorum token then anchors that.
    let out = signer::atomic::AtomicFile::create(output, None).map_err(StationError::failed)?;
    {
        use std::io::Write as _;
        out.file()
            .write_all(&out_bytes)
            .and_then(|()| out.file().sync_all())
            .map_err(|e| StationError::failed(out.error(e)))?;
    }
    let seq = session.record(RELEASE_ACTION, subjects, "ok")?;
    session.seal()?;
    out.commit().map_err(StationError::failed)?;
    for token in p.keys.iter().filter_map(|k| k.unlocked.as_ref()) {
        session.anchor(token)?;
    }
    session.close()?;
    Ok(Signed {
        product: request.product.clone(),
        version: p.image.version.to_string(),
        release_key: key_names.join(" + "),
        approvers: eval.approvers.clone(),
        seq,
    })
}
