//! `keytool release request | approve | check | sign`: releases under the
//! policy with M-of-N officer approval (docs/policy.md).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use policies::evaluate::{evaluate, Candidate, Evaluation};
use policies::history::{last_releases, release_subjects, RELEASE_ACTION};
use policies::policy::{fingerprint, parse_fingerprint, Policy};
use policies::request::{Approval, ReleaseRequest, RequestFile, REQUEST_FORMAT};
use signer::image::{is_hex_path, sign_prebuilt, Prebuilt, PublicKeyFormat};
use signer::{intel_hex, open_signer, KeyRef};

use crate::commands::station::{Context, Session};
use crate::commands::util::{key_ref, print_json};
use crate::failure::{CmdResult, Failure};

/// Release commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ReleaseCommand {
    /// Write a release request for an unsigned image: digest, product,
    /// version, security counter, release key and expiry.
    Request(RequestArgs),
    /// Add an officer's approval (a signature over the request) to REQ.
    Approve(ApproveArgs),
    /// Evaluate the policy for a release without signing anything.
    Check(CheckArgs),
    /// Sign the image if, and only if, the policy passes.
    Sign(SignArgs),
}

impl ReleaseCommand {
    pub(crate) fn run(self, ctx: &Context) -> CmdResult {
        match self {
            ReleaseCommand::Request(a) => a.run(ctx),
            ReleaseCommand::Approve(a) => a.run(ctx),
            ReleaseCommand::Check(a) => a.run(ctx),
            ReleaseCommand::Sign(a) => a.run(ctx),
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An image file: its bytes and, for Intel HEX, its address.
pub(crate) fn read_image(path: &Path) -> Result<(Vec<u8>, Option<u32>), Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage_msg(format!("cannot read {}: {e}", path.display())))?;
    if !is_hex_path(path) {
        return Ok((bytes, None));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::usage_msg(format!("{}: not Intel HEX text", path.display())))?;
    let hex = intel_hex::parse(&text)
        .map_err(|e| Failure::usage_msg(format!("{}: {e}", path.display())))?;
    Ok((hex.data, hex.base_addr))
}

fn prebuilt(path: &Path) -> Result<(Vec<u8>, Option<u32>, Prebuilt), Failure> {
    let (bytes, base) = read_image(path)?;
    let info = Prebuilt::parse(&bytes)
        .map_err(|e| Failure::usage_msg(format!("{}: {e}", path.display())))?;
    Ok((bytes, base, info))
}

pub(crate) fn read_request(path: &Path) -> Result<RequestFile, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage_msg(format!("cannot read {}: {e}", path.display())))?;
    RequestFile::parse(&bytes).map_err(|e| Failure::usage_msg(format!("{}: {e}", path.display())))
}

/// Seconds in `90s`, `30m`, `72h`, `7d`.
fn duration(s: &str) -> Result<i64, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 72h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    match n.checked_mul(scale) {
        Some(v) if v > 0 && v <= 366 * 86_400 => Ok(v),
        _ => Err(format!("{s:?}: between 1s and 366d")),
    }
}

fn request_subjects(r: &ReleaseRequest) -> Vec<String> {
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

/// `keytool release request`.
#[derive(Debug, clap::Args)]
pub(crate) struct RequestArgs {
    /// The unsigned MCUboot image (`keytool image sign` without a key), .bin or .hex.
    image: PathBuf,
    /// The product, as the policy names it.
    #[arg(long)]
    product: String,
    /// The release key meant to sign, by its policy name (default: the
    /// product's only release key).
    #[arg(long, value_name = "NAME")]
    release_key: Option<String>,
    /// How long the approvals may be collected and used: a number with s, m,
    /// h or d.
    #[arg(long, value_name = "DURATION", default_value = "72h", value_parser = duration)]
    valid_for: i64,
    /// The request file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Print the request as JSON.
    #[arg(long)]
    json: bool,
}

impl RequestArgs {
    fn run(self, ctx: &Context) -> CmdResult {
        let policy = ctx.require_policy("release request")?;
        let (file, quorum) = request_release(
            policy,
            &self.image,
            &self.product,
            self.release_key.as_deref(),
            self.valid_for,
            &self.output,
        )?;
        if self.json {
            return print_json(&file);
        }
        eprintln!(
            "release request for {} {} (sha256:{}) written to {}; it needs {quorum} approval(s) (keytool release approve)",
            file.request.product,
            file.request.version,
            file.request.image_digest,
            self.output.display(),
        );
        Ok(())
    }
}

/// Write a release request for `image` to `output` and audit it; returns the
/// request and the product's quorum.
pub(crate) fn request_release(
    policy_path: &Path,
    image_path: &Path,
    product_name: &str,
    release_key: Option<&str>,
    valid_for: i64,
    output: &Path,
) -> Result<(RequestFile, usize), Failure> {
    let mut session = Session::open(policy_path)?;
    let (_, _, image) = prebuilt(image_path)?;
    let product = session
        .policy
        .products
        .get(product_name)
        .cloned()
        .ok_or_else(|| {
            Failure::usage_msg(format!(
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
    let key_name = match (release_key, product.release_keys.as_slice()) {
        (Some(k), _) => k.to_owned(),
        (None, [only]) => only.clone(),
        (None, many) => {
            return Err(Failure::usage_msg(format!(
            "product {product_name:?} has several release keys; pick one with --release-key ({})",
            many.join(", ")
        )))
        }
    };
    if !product.release_keys.contains(&key_name) {
        return Err(Failure::usage_msg(format!(
            "{key_name:?} is not a release key of {product_name:?} ({})",
            product.release_keys.join(", ")
        )));
    }
    let key =
        session.policy.keys.get(&key_name).ok_or_else(|| {
            Failure::usage_msg(format!("{key_name:?} is not in the policy's [keys]"))
        })?;
    if let Some(cap) = session.policy.max_request_validity {
        if valid_for > cap {
            return Err(Failure::usage_msg(format!(
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
        release_key: key_name,
        release_key_fingerprint: format!("sha256:{}", hex::encode(key.fingerprint)),
        created,
        expires: created + valid_for,
    };
    let file = RequestFile {
        request,
        approvals: Vec::new(),
    };
    signer::atomic::write(output, &file.to_bytes()).map_err(Failure::failed)?;
    session.record("release.request", request_subjects(&file.request), "ok")?;
    session.close()?;
    Ok((file, product.quorum))
}

/// `keytool release approve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApproveArgs {
    /// The request file; the approval is added to it.
    request: PathBuf,
    /// The officer's approval key (pkcs11: token, or a file in development).
    #[arg(long, value_name = "URI", value_parser = key_ref)]
    officer_key: KeyRef,
    /// Approve without being asked (scripts): the request is still shown.
    #[arg(long)]
    yes: bool,
    /// Print the approval as JSON.
    #[arg(long)]
    json: bool,
}

/// Show the officer what they are about to approve, and ask on a terminal.
/// Returns the digest of what was shown.
fn show_and_confirm(path: &Path, yes: bool) -> Result<[u8; 32], Failure> {
    use std::io::IsTerminal;
    let file = read_request(path)?;
    let r = &file.request;
    eprintln!(
        "release request {}:
  product   {}
  version   {}
  counter   {}
  image     sha256:{} ({} bytes)
  key       {} ({})
  expires   {} (unix)
  approvals {}",
        path.display(),
        r.product,
        r.version,
        r.security_counter.map_or("none".into(), |c| c.to_string()),
        r.image_digest,
        r.image_size,
        r.release_key,
        r.release_key_fingerprint,
        r.expires,
        file.approvals.len()
    );
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage_msg(
                "no terminal to confirm on: read the request above and pass --yes",
            ));
        }
        eprint!("approve this release? [y/N] ");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(Failure::failed)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Failure::usage_msg("not approved"));
        }
    }
    Ok(r.approval_digest())
}

impl ApproveArgs {
    fn run(self, ctx: &Context) -> CmdResult {
        let policy = ctx.require_policy("release approve")?;
        let shown = show_and_confirm(&self.request, self.yes)?;
        let (officer, approval, file) =
            approve_release(policy, &self.request, &self.officer_key, Some(shown))?;
        if self.json {
            return print_json(&approval);
        }
        eprintln!(
            "{officer} approved {} {} (sha256:{}); {} approval(s) on the request",
            file.request.product,
            file.request.version,
            file.request.image_digest,
            file.approvals.len()
        );
        Ok(())
    }
}

/// Add the approval of the officer whose key `officer_key` is to the request
/// at `request_path`, audited; refusals are audited too.
pub(crate) fn approve_release(
    policy_path: &Path,
    request_path: &Path,
    officer_key: &KeyRef,
    shown: Option<[u8; 32]>,
) -> Result<(String, Approval, RequestFile), Failure> {
    let mut session = Session::open(policy_path)?;
    let mut file = read_request(request_path)?;
    if shown.is_some_and(|d| d != file.request.approval_digest()) {
        return Err(session.refuse(
            "release.approve",
            request_subjects(&file.request),
            &["the request changed since it was shown to the officer: look at it again".into()],
        ));
    }
    let key = open_signer(officer_key).map_err(Failure::usage)?;
    let public = key.public_key().map_err(Failure::failed)?;
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
        .map_err(Failure::failed)?;
    file.approvals.push(approval.clone());
    signer::atomic::write(request_path, &file.to_bytes()).map_err(Failure::failed)?;
    session.record("release.approve", subjects, "ok")?;
    session.close()?;
    Ok((officer, approval, file))
}

/// What `check` and `sign` share.
#[derive(Debug, clap::Args)]
pub(crate) struct ReleaseArgs {
    /// The request file, with its approvals.
    request: PathBuf,
    /// The unsigned image the request names.
    #[arg(long)]
    image: PathBuf,
    /// The release key to sign with.
    #[arg(short, long, value_name = "URI", value_parser = key_ref)]
    key: KeyRef,
    /// For a key in a quorum-unlocked token: an officer who unlocks it with
    /// their share, NAME=pkcs11:token=… (repeat for M officers; each logs in
    /// to their own token).
    #[arg(long = "unlock", value_name = "NAME=URI", value_parser = crate::commands::util::officer)]
    unlock: Vec<signer::keys::quorum::Officer>,
    /// Print the evaluation (and the result) as JSON.
    #[arg(long)]
    json: bool,
}

/// `keytool release check`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    release: ReleaseArgs,
}

/// `keytool release sign`.
#[derive(Debug, clap::Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    release: ReleaseArgs,
    /// The signed image to write (.bin, or .hex for a .hex input).
    #[arg(short, long)]
    output: PathBuf,
    /// Put the key's hash (KEYHASH) or the whole key (PUBKEY) in the image.
    #[arg(long, value_enum, default_value = "hash")]
    public_key_format: KeyFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyFormat {
    Hash,
    Full,
}

fn print_evaluation(e: &Evaluation) {
    let mut err = std::io::stderr().lock();
    for r in &e.rules {
        let _ = writeln!(
            err,
            "  {}  {:<22} {}",
            if r.passed { "PASS" } else { "FAIL" },
            r.rule,
            r.detail
        );
    }
}

/// Everything a release evaluation needs, read and opened.
struct Prepared {
    file: RequestFile,
    bytes: Vec<u8>,
    base: Option<u32>,
    image: Prebuilt,
    key: Box<dyn signer::keys::Signer>,
    public: firmware::P256PublicKey,
    /// The quorum token the key is in, unlocked, if it is one.
    unlocked: Option<signer::keys::quorum::Unlocked>,
}

fn prepare(
    request: &Path,
    image: &Path,
    key: &KeyRef,
    unlock: &[signer::keys::quorum::Officer],
) -> Result<Prepared, Failure> {
    let file = read_request(request)?;
    let (bytes, base, image) = prebuilt(image)?;
    let (key, unlocked) = match key {
        KeyRef::Pkcs11(uri) if !unlock.is_empty() => {
            let token = signer::keys::quorum::unlock(uri, unlock).map_err(Failure::usage)?;
            (token.signer(key).map_err(Failure::usage)?, Some(token))
        }
        _ if !unlock.is_empty() => {
            return Err(Failure::usage_msg(
                "--unlock: only a pkcs11: key can be in a quorum-unlocked token",
            ))
        }
        _ => (open_signer(key).map_err(Failure::usage)?, None),
    };
    let public = key.public_key().map_err(Failure::failed)?;
    Ok(Prepared {
        file,
        bytes,
        base,
        image,
        key,
        public,
        unlocked,
    })
}

/// The policy's station key's public half, for verifying the log.
pub(crate) fn station_public(policy: &Policy) -> Result<Option<firmware::P256PublicKey>, Failure> {
    policy
        .station_key
        .as_ref()
        .map(signer::public_key::load_public_key)
        .transpose()
        .map_err(|e| Failure::failed(anyhow::anyhow!("station key: {e}")))
}

fn judge(
    policy: &Policy,
    station: Option<&firmware::P256PublicKey>,
    key_ref: &KeyRef,
    p: &Prepared,
) -> Result<Evaluation, Failure> {
    let history = last_releases(&policy.audit_log, station).map_err(Failure::failed)?;
    let candidate = Candidate {
        request: &p.file,
        image: &p.image,
        key_ref,
        key: &p.public,
    };
    Ok(evaluate(
        policy,
        &candidate,
        history.get(&p.file.request.product),
        now(),
    ))
}

impl CheckArgs {
    fn run(self, ctx: &Context) -> CmdResult {
        let r = &self.release;
        let eval = evaluate_release(
            ctx.require_policy("release check")?,
            &r.request,
            &r.image,
            &r.key,
            &r.unlock,
        )?;
        if r.json {
            print_json(&eval)?;
        } else {
            print_evaluation(&eval);
        }
        if eval.passed() {
            Ok(())
        } else {
            Err(Failure::failed(anyhow::anyhow!(
                "the policy would refuse this release:\n  {}",
                eval.failures().join("\n  ")
            )))
        }
    }
}

/// The policy's verdict on signing `image` for `request` with `key`, without
/// signing or writing anything.
pub(crate) fn evaluate_release(
    policy_path: &Path,
    request: &Path,
    image: &Path,
    key: &KeyRef,
    unlock: &[signer::keys::quorum::Officer],
) -> Result<Evaluation, Failure> {
    let policy = Policy::load(policy_path).map_err(Failure::usage)?;
    let p = prepare(request, image, key, unlock)?;
    judge(&policy, station_public(&policy)?.as_ref(), key, &p)
}

#[derive(serde::Serialize)]
struct SignSummary<'a> {
    signed: bool,
    output: Option<String>,
    audit_seq: Option<u64>,
    evaluation: &'a Evaluation,
}

impl SignArgs {
    fn run(self, ctx: &Context) -> CmdResult {
        let r = &self.release;
        let format = match self.public_key_format {
            KeyFormat::Hash => PublicKeyFormat::Hash,
            KeyFormat::Full => PublicKeyFormat::Full,
        };
        let policy = ctx.require_policy("release sign")?;
        let outcome = sign_release(
            policy,
            &r.request,
            &r.image,
            (&r.key, &r.unlock),
            &self.output,
            format,
        );
        if let Some(eval) = &outcome.evaluation {
            if r.json {
                print_json(&SignSummary {
                    signed: outcome.result.is_ok(),
                    output: outcome
                        .result
                        .is_ok()
                        .then(|| self.output.display().to_string()),
                    audit_seq: outcome.result.as_ref().ok().map(|s| s.seq),
                    evaluation: eval,
                })?;
            } else {
                print_evaluation(eval);
            }
        }
        let signed = outcome.result?;
        if !r.json {
            eprintln!(
                "signed {} {} for {} with {} (approved by {}); audit line {}",
                signed.product,
                signed.version,
                self.output.display(),
                signed.release_key,
                signed.approvers.join(", "),
                signed.seq
            );
        }
        Ok(())
    }
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
    pub(crate) result: Result<Signed, Failure>,
}

/// Sign `image` into `output` if, and only if, the policy passes; every
/// outcome is audited and nothing is written on a refusal.
pub(crate) fn sign_release(
    policy_path: &Path,
    request: &Path,
    image: &Path,
    (key_ref, unlock): (&KeyRef, &[signer::keys::quorum::Officer]),
    output: &Path,
    format: PublicKeyFormat,
) -> SignOutcome {
    let fail = |f: Failure| SignOutcome {
        evaluation: None,
        result: Err(f),
    };
    let session = match Session::open(policy_path) {
        Ok(s) => s,
        Err(f) => return fail(f),
    };
    let p = match prepare(request, image, key_ref, unlock) {
        Ok(p) => p,
        Err(f) => {
            let reason = format!("{:#}", f.error);
            return fail(session.refuse(RELEASE_ACTION, vec![], &[reason]));
        }
    };
    let mut held = crate::commands::station::key_storage_problems(&session.policy, p.key.as_ref());
    if let Some(token) = &p.unlocked {
        match session.check_anchor(token) {
            Ok(true) => {}
            Ok(false) if session.policy.production => held.push(
                "the release token holds no anchor of this station's audit log (keytool \
                 ceremony init or keytool audit init --anchor-token anchors it): the history \
                 could have been reset"
                    .into(),
            ),
            Ok(false) => {}
            Err(why) => held.extend(why),
        }
    }
    let eval = match judge(
        &session.policy,
        session.station_public.as_ref(),
        key_ref,
        &p,
    ) {
        Ok(e) => e,
        Err(f) => return fail(f),
    };
    let result = sign_judged(session, &p, &eval, &held, output, format);
    SignOutcome {
        evaluation: Some(eval),
        result,
    }
}

fn sign_judged(
    mut session: Session,
    p: &Prepared,
    eval: &Evaluation,
    held: &[String],
    output: &Path,
    format: PublicKeyFormat,
) -> Result<Signed, Failure> {
    let request = &p.file.request;
    let mut subjects = release_subjects(
        &request.product,
        &p.image.version,
        p.image.security_counter,
        &hex::encode(p.image.digest),
        &request.release_key,
    );
    if !eval.passed() || !held.is_empty() {
        let mut why = eval.failures();
        why.extend(held.iter().cloned());
        return Err(session.refuse(RELEASE_ACTION, subjects, &why));
    }
    let signed = sign_prebuilt(&p.bytes, p.key.as_ref(), format)?;
    let out_bytes = if is_hex_path(output) {
        let base = p
            .base
            .ok_or_else(|| Failure::usage_msg("a .hex output needs a .hex input (its address)"))?;
        intel_hex::write(&[(base, &signed.bytes)])
            .map_err(Failure::failed)?
            .into_bytes()
    } else {
        signed.bytes
    };
    subjects.push(format!("approved-by:{}", eval.approvers.join(",")));
    // The signed image is committed only once the log holds its entry and
    // the checkpoint that covers it; a quorum token then anchors that.
    let out = signer::atomic::AtomicFile::create(output, None).map_err(Failure::failed)?;
    {
        use std::io::Write as _;
        out.file()
            .write_all(&out_bytes)
            .and_then(|()| out.file().sync_all())
            .map_err(|e| Failure::failed(out.error(e)))?;
    }
    let seq = session.record(RELEASE_ACTION, subjects, "ok")?;
    session.seal()?;
    out.commit().map_err(Failure::failed)?;
    if let Some(token) = &p.unlocked {
        session.anchor(token)?;
    }
    session.close()?;
    Ok(Signed {
        product: request.product.clone(),
        version: p.image.version.to_string(),
        release_key: request.release_key.clone(),
        approvers: eval.approvers.clone(),
        seq,
    })
}
