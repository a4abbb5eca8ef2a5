//! The station under a policy: the policy file, its audit log and station
//! key, opened once per command (a session) and closed with a signed
//! checkpoint of the log.

use std::path::{Path, PathBuf};

use policies::audit::AuditLog;
use policies::policy::Policy;
use signer::keys::Signer;
use signer::open_signer;

use crate::station::error::StationError;

/// Where the policy comes from: `--policy`, or `KEYTOOL_POLICY`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Context {
    pub(crate) policy: Option<PathBuf>,
}

impl Context {
    /// The policy path, or a usage error naming the command that needs one.
    pub(crate) fn require_policy(&self, command: &str) -> Result<&Path, StationError> {
        self.policy.as_deref().ok_or_else(|| {
            StationError::usage_msg(format!(
                "{command} needs a policy: give --policy FILE or set KEYTOOL_POLICY"
            ))
        })
    }
}

/// An open policy and audit log for one command.
pub(crate) struct Session {
    pub(crate) policy: Policy,
    log: AuditLog,
    station: Option<Box<dyn Signer>>,
    /// The station key's public half, which the log's checkpoints verify with.
    pub(crate) station_public: Option<firmware::P256PublicKey>,
    actor: String,
    wrote: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("policy", &self.policy.name)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

/// How `key` is held, against what `policy` demands of release, CA and
/// authority keys (see [`Session::check_key`]); every problem.
pub(crate) fn key_storage_problems(policy: &Policy, key: &dyn Signer) -> Vec<String> {
    let mut why = Vec::new();
    if policy.production {
        match key.production_problems() {
            Ok(p) => why.extend(p),
            Err(e) => why.push(format!("cannot check how the key is held: {e}")),
        }
    }
    if policy.require_quorum_keys {
        match key.key_ref() {
            signer::KeyRef::Pkcs11(uri) => match signer::keys::quorum::config(uri) {
                Ok(Some(_)) => {}
                Ok(None) => why.push(format!(
                    "require_quorum_keys: token {} is not quorum-unlocked; one PIN opens it \
                     (keytool ceremony init, docs/quorum.md)",
                    match &uri.token {
                        signer::key_ref::TokenSelector::Label(l) => l.clone(),
                        signer::key_ref::TokenSelector::Serial(s) => format!("serial {s}"),
                        signer::key_ref::TokenSelector::SlotId(n) => format!("in slot {n}"),
                    }
                )),
                Err(e) => why.push(format!("require_quorum_keys: {e}")),
            },
            signer::KeyRef::AwsKms(_) => why.push(
                "require_quorum_keys: a KMS key has no PIN to split among officers; IAM and \
                 key policies decide who may use it, and one administrator can change them"
                    .into(),
            ),
            _ => why.push(format!(
                "require_quorum_keys: {} cannot be quorum-unlocked",
                key.key_ref()
            )),
        }
    }
    why
}

/// Label prefix of the audit anchor a quorum token holds (then the policy's
/// name).
pub(crate) const ANCHOR_PREFIX: &str = "nrf-fleet audit anchor: ";

/// Where the log stood when the quorum last signed: its line count and the
/// hash of its last line (a checkpoint).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Anchor {
    seq: u64,
    hash: String,
}

/// Who is at the station, for audit entries: `$USER`, else `station`.
pub(crate) fn station_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "station".into())
}

impl Session {
    /// Load the policy, open the station key (if the policy names one) and
    /// the audit log, which must verify (with the station key's signatures).
    pub(crate) fn open(policy_path: &Path) -> Result<Self, StationError> {
        Self::open_log(policy_path, false)
    }

    /// As [`Session::open`], for a log that does not exist yet (refusing one
    /// that does).
    pub(crate) fn create(policy_path: &Path) -> Result<Self, StationError> {
        Self::open_log(policy_path, true)
    }

    fn open_log(policy_path: &Path, new: bool) -> Result<Self, StationError> {
        let policy = Policy::load(policy_path).map_err(StationError::usage)?;
        let station = policy
            .station_key
            .as_ref()
            .map(open_signer)
            .transpose()
            .map_err(|e| StationError::failed(anyhow::anyhow!("station key: {e}")))?;
        let station_public = station
            .as_ref()
            .map(|s| s.public_key())
            .transpose()
            .map_err(|e| StationError::failed(anyhow::anyhow!("station key: {e}")))?;
        if let (Some(pinned), Some(public)) = (&policy.station_key_fingerprint, &station_public) {
            if public.key_id() != *pinned {
                return Err(StationError::failed(anyhow::anyhow!(
                    "station key: the key at the policy's URI is {}, not the pinned {}; \
                     nothing is signed",
                    policies::policy::fingerprint(public),
                    format_args!("sha256:{}", hex::encode(pinned))
                )));
            }
        }
        let log = if new {
            AuditLog::create(&policy.audit_log, station_public.as_ref())
        } else if policy.production {
            AuditLog::open_existing(&policy.audit_log, station_public.as_ref())
        } else {
            AuditLog::open(&policy.audit_log, station_public.as_ref())
        }
        .map_err(|e| {
            StationError::failed(anyhow::anyhow!(
                "audit log {}: {e}; nothing is signed until it verifies (keytool audit verify)",
                policy.audit_log.display()
            ))
        })?;
        Ok(Self {
            policy,
            log,
            station,
            station_public,
            actor: station_user(),
            wrote: false,
        })
    }

    /// May `key` (at `uri`) sign as `role` now? The policy's rules
    /// (`Policy::check_key`) and, checked on use, how the key is held: under
    /// a production policy generated in its store, never extractable and
    /// sign-only; under `require_quorum_keys` in a quorum-unlocked token.
    /// `Ok` with the key's name, or every reason it may not.
    pub(crate) fn check_key(
        &self,
        role: policies::policy::Role,
        uri: &signer::KeyRef,
        key: &dyn Signer,
    ) -> Result<String, Vec<String>> {
        let public = key.public_key().map_err(|e| vec![e.to_string()])?;
        let mut why = Vec::new();
        let name = match self.policy.check_key(role, uri, &public) {
            Ok(n) => Some(n),
            Err(w) => {
                why.extend(w);
                None
            }
        };
        why.extend(key_storage_problems(&self.policy, key));
        match name {
            Some(n) if why.is_empty() => Ok(n),
            _ => Err(why),
        }
    }

    /// Write the checkpoint now (the station key signs it), so that what
    /// follows is covered: the signed output is committed only after it.
    pub(crate) fn seal(&mut self) -> Result<(), StationError> {
        if let (true, Some(station)) = (self.wrote, &self.station) {
            let actor = self.actor.clone();
            self.log
                .checkpoint(&actor, station.as_ref())
                .map_err(|e| StationError::failed(anyhow::anyhow!("audit checkpoint: {e}")))?;
        }
        self.wrote = false;
        Ok(())
    }

    fn anchor_label(&self) -> String {
        format!("{ANCHOR_PREFIX}{}", self.policy.name)
    }

    /// Check the log against the history `token` (a quorum token, unlocked)
    /// anchored for this policy: the anchored line must be in the log with
    /// the anchored hash, so a log that was deleted, cut, replaced or
    /// restored from an older copy stops the station. `Ok(false)`: no
    /// anchor yet.
    pub(crate) fn check_anchor(
        &self,
        token: &signer::keys::quorum::Unlocked,
    ) -> Result<bool, Vec<String>> {
        let stored = token
            .read_private(&self.anchor_label())
            .map_err(|e| vec![format!("audit anchor: {e}")])?;
        let Some(bytes) = stored else {
            return Ok(false);
        };
        let anchor: Anchor = serde_json::from_slice(&bytes)
            .map_err(|e| vec![format!("audit anchor in the token is malformed: {e}")])?;
        let here = self
            .log
            .line_hash_at(anchor.seq)
            .map_err(|e| vec![format!("audit log: {e}")])?;
        if here.map(hex::encode).as_deref() != Some(anchor.hash.as_str()) {
            return Err(vec![format!(
                "the audit log {} does not hold the history the token anchored (line {} with \
                 hash {}); it ends at line {}: it was deleted, cut, replaced or restored from \
                 an older copy, and nothing is signed until it is restored",
                self.policy.audit_log.display(),
                anchor.seq,
                anchor.hash,
                self.log.seq()
            )]);
        }
        Ok(true)
    }

    /// Anchor the log as it is now (seal first) in `token`, a quorum token:
    /// only the quorum can move the anchor.
    pub(crate) fn anchor(
        &mut self,
        token: &signer::keys::quorum::Unlocked,
    ) -> Result<(), StationError> {
        self.seal()?;
        let anchor = Anchor {
            seq: self.log.seq(),
            hash: hex::encode(self.log.last_hash()),
        };
        let json = serde_json::to_vec(&anchor).map_err(StationError::failed)?;
        token
            .write_private(&self.anchor_label(), &json)
            .map_err(|e| StationError::failed(anyhow::anyhow!("audit anchor: {e}")))
    }

    /// Who the entries name.
    pub(crate) fn set_actor(&mut self, actor: impl Into<String>) {
        self.actor = actor.into();
    }

    /// Append one entry.
    pub(crate) fn record(
        &mut self,
        action: &str,
        subjects: Vec<String>,
        outcome: &str,
    ) -> Result<u64, StationError> {
        self.wrote = true;
        self.log
            .append(&self.actor, action, subjects, outcome)
            .map_err(|e| StationError::failed(anyhow::anyhow!("audit log: {e}")))
    }

    /// Write `bytes` to `path` and record `action` as done: the file appears
    /// (atomically) only once the log holds the entry, so a failure leaves
    /// neither an output without an entry nor a partial file.
    pub(crate) fn write_recorded(
        &mut self,
        path: &Path,
        bytes: &[u8],
        action: &str,
        subjects: Vec<String>,
    ) -> Result<u64, StationError> {
        use std::io::Write as _;
        let out = signer::atomic::AtomicFile::create(path, None).map_err(StationError::failed)?;
        out.file()
            .write_all(bytes)
            .and_then(|()| out.file().sync_all())
            .map_err(|e| StationError::failed(out.error(e)))?;
        let seq = self.record(action, subjects, "ok")?;
        out.commit().map_err(StationError::failed)?;
        Ok(seq)
    }

    /// End the session: a checkpoint signed by the station key, if any.
    pub(crate) fn close(mut self) -> Result<(), StationError> {
        self.seal()
    }

    /// Record a refusal, close the session and return the failure (exit 1)
    /// listing every reason.
    pub(crate) fn refuse(
        mut self,
        action: &str,
        subjects: Vec<String>,
        reasons: &[String],
    ) -> StationError {
        let outcome = format!("refused: {}", reasons.join("; "));
        let logged = self
            .record(action, subjects, &outcome)
            .and_then(|_| self.close());
        match logged {
            Ok(()) => StationError::Refused {
                action: action.to_owned(),
                reasons: reasons.to_vec(),
            },
            Err(e) => e,
        }
    }
}
