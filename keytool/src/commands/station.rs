//! The station under a policy: the policy file, its audit log and station
//! key, opened once per command (a session) and closed with a signed
//! checkpoint of the log.

use std::path::{Path, PathBuf};

use policies::audit::AuditLog;
use policies::policy::Policy;
use signer::keys::Signer;
use signer::open_signer;

use crate::failure::Failure;

/// Where the policy comes from: `--policy`, or `KEYTOOL_POLICY`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Context {
    pub(crate) policy: Option<PathBuf>,
}

impl Context {
    /// The policy path, or a usage error naming the command that needs one.
    pub(crate) fn require_policy(&self, command: &str) -> Result<&Path, Failure> {
        self.policy.as_deref().ok_or_else(|| {
            Failure::usage_msg(format!(
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
    pub(crate) fn open(policy_path: &Path) -> Result<Self, Failure> {
        let policy = Policy::load(policy_path).map_err(Failure::usage)?;
        let station = policy
            .station_key
            .as_ref()
            .map(open_signer)
            .transpose()
            .map_err(|e| Failure::failed(anyhow::anyhow!("station key: {e}")))?;
        let station_public = station
            .as_ref()
            .map(|s| s.public_key())
            .transpose()
            .map_err(|e| Failure::failed(anyhow::anyhow!("station key: {e}")))?;
        let log = AuditLog::open(&policy.audit_log, station_public.as_ref()).map_err(|e| {
            Failure::failed(anyhow::anyhow!(
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
    ) -> Result<u64, Failure> {
        self.wrote = true;
        self.log
            .append(&self.actor, action, subjects, outcome)
            .map_err(|e| Failure::failed(anyhow::anyhow!("audit log: {e}")))
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
    ) -> Result<u64, Failure> {
        use std::io::Write as _;
        let out = signer::atomic::AtomicFile::create(path, None).map_err(Failure::failed)?;
        out.file()
            .write_all(bytes)
            .and_then(|()| out.file().sync_all())
            .map_err(|e| Failure::failed(out.error(e)))?;
        let seq = self.record(action, subjects, "ok")?;
        out.commit().map_err(Failure::failed)?;
        Ok(seq)
    }

    /// End the session: a checkpoint signed by the station key, if any.
    pub(crate) fn close(mut self) -> Result<(), Failure> {
        if let (true, Some(station)) = (self.wrote, &self.station) {
            let actor = self.actor.clone();
            self.log
                .checkpoint(&actor, station.as_ref())
                .map_err(|e| Failure::failed(anyhow::anyhow!("audit checkpoint: {e}")))?;
        }
        Ok(())
    }

    /// Record a refusal, close the session and return the failure (exit 1)
    /// listing every reason.
    pub(crate) fn refuse(
        mut self,
        action: &str,
        subjects: Vec<String>,
        reasons: &[String],
    ) -> Failure {
        let outcome = format!("refused: {}", reasons.join("; "));
        let logged = self
            .record(action, subjects, &outcome)
            .and_then(|_| self.close());
        match logged {
            Ok(()) => Failure::failed(anyhow::anyhow!(
                "{action} refused by policy:\n  {}",
                reasons.join("\n  ")
            )),
            Err(e) => e,
        }
    }
}
