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
