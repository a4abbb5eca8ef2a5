//! The TUI's jobs, run one after another on a thread of their own so the
//! screen never waits for an HSM, a signature or the disk. Each job is the
//! same function the command line uses; the worker only turns its result
//! into an [`Event`].

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};

use policies::audit::{verify, Entry};
use policies::policy::{fingerprint, Policy};
use secrecy::SecretString;
use signer::image::{is_hex_path, Prebuilt, PublicKeyFormat};
use signer::key_ref::PinSource;
use signer::public_key::{encode_public, load_image_key, PubEncoding};
use signer::KeyRef;

use super::app::{Action, AuditRow, Event, ImageRow, ImageSummary, KeyRow, ReleaseView};
use super::config::StationConfig;
use crate::failure::Failure;
use crate::station::release::{
    approve_release, evaluate_release, read_image, read_request, request_release, sign_release,
    station_public,
};
use policies::request::ReleaseRequest;

/// How long a request made on the station stays valid.
const REQUEST_VALIDITY: i64 = 72 * 3600;

/// Run jobs from `jobs` until the channel closes, reporting on `events`.
pub(crate) fn serve(config: StationConfig, jobs: Receiver<Action>, events: Sender<Event>) {
    let worker = Worker { config, events };
    for job in jobs {
        let event = worker.run(job);
        if worker.events.send(event).is_err() {
            return;
        }
    }
}

struct Worker {
    config: StationConfig,
    events: Sender<Event>,
}

fn failed(f: Failure) -> Event {
    Event::Failed(format!("{:#}", f.error))
}

/// `app.unsigned.bin` → `app.unsigned.req.json`.
pub(crate) fn request_path(image: &Path) -> PathBuf {
    image.with_extension("req.json")
}

/// `app.unsigned.bin` → `app.signed.bin`; `app.bin` → `app.signed.bin`.
pub(crate) fn signed_path(image: &Path) -> PathBuf {
    let ext = image
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bin".into());
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem.strip_suffix(".unsigned").unwrap_or(&stem);
    image.with_file_name(format!("{stem}.signed.{ext}"))
}

impl Worker {
    fn policy_path(&self) -> Result<&Path, Failure> {
        self.config
            .policy
            .as_deref()
            .ok_or_else(|| Failure::usage_msg("no policy configured (policy = … in station.toml)"))
    }

    fn policy(&self) -> Result<Policy, Failure> {
        Policy::load(self.policy_path()?).map_err(Failure::usage)
    }

    fn run(&self, job: Action) -> Event {
        let result = match job {
            Action::LoadKeys => self.keys(),
            Action::GenerateKey { uri } => self.generate(&uri),
            Action::ExportKey { name, uri, c_array } => self.export(&name, &uri, c_array),
            Action::ScanImages => Ok(Event::Images(self.images())),
            Action::Inspect { image, product } => {
                Ok(Event::Release(self.inspect(&image, &product)))
            }
            Action::Request { image, product } => self.request(&image, &product),
            Action::Approve {
                image,
                officer,
                pin,
                shown,
            } => self.approve(&image, &officer, pin, shown),
            Action::Sign { image, unlock } => self.sign(&image, unlock),
            Action::ScanRequests => Ok(Event::Requests {
                files: self.requests(),
                quorum: self.authority_quorum(),
            }),
            Action::SignRecords { file, unlock } => self.policy_path().and_then(|policy| {
                let events = &self.events;
                let mut progress = |label: &str, done, total| {
                    let _ = events.send(Event::Progress {
                        label: label.to_owned(),
                        done,
                        total,
                    });
                };
                let officers = quorum_officers(unlock);
                let (written, out_dir) =
                    crate::station::records::sign_batch(policy, &file, &officers, &mut progress)?;
                Ok(Event::RecordsDone { written, out_dir })
            }),
            Action::LoadAudit => self.audit(),
            Action::VerifyAudit => self.verify(),
            Action::Quit => Ok(Event::Info(String::new())),
        };
        result.unwrap_or_else(failed)
    }

    fn keys(&self) -> Result<Event, Failure> {
        let Some(path) = &self.config.policy else {
            return Ok(Event::Keys(Vec::new()));
        };
        let policy = Policy::load(path).map_err(Failure::usage)?;
        let mut rows: Vec<KeyRow> = policy
            .keys
            .iter()
            .map(|(name, k)| KeyRow {
                name: name.clone(),
                role: k.role.to_string(),
                uri: k.uri.to_string(),
                fingerprint: format!("sha256:{}", hex::encode(k.fingerprint)),
            })
            .collect();
        rows.extend(policy.officers.iter().map(|(name, o)| {
            KeyRow {
                name: name.clone(),
                role: "officer".into(),
                uri: self
                    .config
                    .officers
                    .get(name)
                    .map_or_else(|| "(no token configured)".into(), ToString::to_string),
                fingerprint: fingerprint(&o.public_key),
            }
        }));
        Ok(Event::Keys(rows))
    }

    fn generate(&self, uri: &str) -> Result<Event, Failure> {
        let key: KeyRef = uri.parse().map_err(Failure::usage)?;
        let (public, named) =
            crate::station::keys::generate(&key, signer::keys::KeyType::EcdsaP256, false)?;
        Ok(Event::Info(format!(
            "generated {named}: sha256:{} (add it to the policy to use it)",
            hex::encode(signer::public_key::image_key_id(&public))
        )))
    }

    fn export(&self, name: &str, uri: &str, c_array: bool) -> Result<Event, Failure> {
        let key: KeyRef = uri.parse().map_err(Failure::usage)?;
        let public = load_image_key(&key).map_err(Failure::failed)?;
        let (encoding, ext) = if c_array {
            (PubEncoding::LangC, "pub.c")
        } else {
            (PubEncoding::Pem, "pub.pem")
        };
        let out = self.config.exports.join(format!("{name}.{ext}"));
        signer::atomic::write(&out, &encode_public(&public, encoding, ""))
            .map_err(Failure::failed)?;
        Ok(Event::Info(format!("exported {name} to {}", out.display())))
    }

    fn images(&self) -> Vec<ImageRow> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.config.images)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.retain(|p| {
            p.is_file()
                && (is_hex_path(p) || p.extension().is_some_and(|e| e.eq_ignore_ascii_case("bin")))
        });
        paths.sort();
        paths
            .into_iter()
            .map(|path| {
                let summary = read_image(&path)
                    .map(|(bytes, _)| bytes)
                    .map_err(|f| f.to_string())
                    .and_then(|bytes| {
                        Prebuilt::parse(&bytes)
                            .map(|p| ImageSummary {
                                version: p.version.to_string(),
                                security_counter: p.security_counter,
                                size: p.size as u64,
                                digest: hex::encode(p.digest),
                                protected_tlvs: p.protected_tlvs,
                            })
                            .map_err(|e| e.to_string())
                    });
                ImageRow {
                    name: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    path,
                    summary,
                }
            })
            .collect()
    }

    /// The URI of the release key a request names, from the policy.
    fn release_key(policy: &Policy, request: &ReleaseRequest) -> Result<KeyRef, Failure> {
        policy
            .keys
            .get(&request.release_key)
            .map(|k| k.uri.clone())
            .ok_or_else(|| {
                Failure::usage_msg(format!(
                    "the request names release key {:?}, which is not in the policy",
                    request.release_key
                ))
            })
    }

    fn inspect(&self, image: &Path, product: &str) -> ReleaseView {
        let req = request_path(image);
        let mut view = ReleaseView::default();
        if !req.exists() {
            view.note = Some("no request yet: press n to request this release".into());
            return view;
        }
        let result = (|| -> Result<(), Failure> {
            let file = read_request(&req)?;
            view.request = Some(req.clone());
            view.request_digest = Some(file.request.approval_digest());
            if let Ok(key) = Self::release_key(&self.policy()?, &file.request) {
                view.quorum = quorum_view(&key);
            }
            view.approvals = file.approvals.iter().map(|a| a.officer.clone()).collect();
            if file.request.product != product {
                view.note = Some(format!(
                    "the request is for {}: press p to switch product",
                    file.request.product
                ));
                return Ok(());
            }
            let key = Self::release_key(&self.policy()?, &file.request)?;
            view.evaluation = Some(evaluate_release(
                self.policy_path()?,
                &req,
                image,
                std::slice::from_ref(&key),
                &[],
            )?);
            Ok(())
        })();
        if let Err(f) = result {
            view.note = Some(format!("{:#}", f.error));
        }
        view
    }

    fn request(&self, image: &Path, product: &str) -> Result<Event, Failure> {
        let req = request_path(image);
        if req.exists() {
            return Ok(Event::Info(format!(
                "a request already exists: {}",
                req.display()
            )));
        }
        let (file, quorum) = request_release(
            self.policy_path()?,
            image,
            product,
            &[],
            REQUEST_VALIDITY,
            &req,
        )?;
        Ok(Event::Info(format!(
            "requested {} {}; it needs {quorum} approvals",
            file.request.product, file.request.version
        )))
    }

    fn approve(
        &self,
        image: &Path,
        officer: &str,
        pin: SecretString,
        shown: Option<[u8; 32]>,
    ) -> Result<Event, Failure> {
        let Some(shown) = shown else {
            return Err(Failure::usage_msg(
                "no request on screen for this image: approve what you can see",
            ));
        };
        let key = match self.config.officers.get(officer) {
            Some(KeyRef::Pkcs11(uri)) => {
                let mut uri = uri.clone();
                uri.pin = Some(PinSource::Value(pin));
                KeyRef::Pkcs11(uri)
            }
            Some(other) => other.clone(),
            None => {
                return Err(Failure::usage_msg(format!(
                    "no token configured for {officer} (officers.{officer} in station.toml)"
                )))
            }
        };
        let (name, _, file) =
            approve_release(self.policy_path()?, &request_path(image), &key, Some(shown))?;
        Ok(Event::Info(format!(
            "{name} approved; {} approval(s) on the request",
            file.approvals.len()
        )))
    }

    fn sign(&self, image: &Path, unlock: Vec<super::app::Unlocker>) -> Result<Event, Failure> {
        let officers = quorum_officers(unlock);
        let _ = self.events.send(Event::Progress {
            label: "signing".into(),
            done: 0,
            total: 1,
        });
        let policy = self.policy()?;
        let req = request_path(image);
        let key = Self::release_key(&policy, &read_request(&req)?.request)?;
        let output = signed_path(image);
        let outcome = sign_release(
            self.policy_path()?,
            &req,
            image,
            (std::slice::from_ref(&key), &officers),
            &output,
            PublicKeyFormat::Hash,
        );
        let signed = outcome.result?;
        let entry = last_entry(&policy.audit_log, signed.seq)
            .unwrap_or_else(|| format!("audit line {}", signed.seq));
        Ok(Event::Signed { output, entry })
    }

    /// The quorum of the policy's authority key's token, if it has one.
    fn authority_quorum(&self) -> Option<super::app::QuorumView> {
        let policy = self.policy().ok()?;
        let key = policy
            .keys
            .values()
            .find(|k| k.role == policies::policy::Role::Authority)?;
        quorum_view(&key.uri)
    }

    fn requests(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.config.requests)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == "jsonl"));
        // The station's own audit log is JSON lines too, and never a request.
        if let Some(log) = self.policy().ok().map(|p| p.audit_log) {
            let log = std::fs::canonicalize(&log).unwrap_or(log);
            files.retain(|p| std::fs::canonicalize(p).map_or(true, |p| p != log));
        }
        files.sort();
        files
    }

    fn audit(&self) -> Result<Event, Failure> {
        let Some(path) = &self.config.policy else {
            return Ok(Event::Audit(Vec::new()));
        };
        let policy = Policy::load(path).map_err(Failure::usage)?;
        let text = std::fs::read_to_string(&policy.audit_log).unwrap_or_default();
        let rows = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
            .map(|e| AuditRow {
                seq: e.seq,
                time: utc(e.time),
                actor: e.actor,
                action: e.action,
                outcome: e.outcome,
                subjects: e.subjects,
            })
            .collect();
        Ok(Event::Audit(rows))
    }

    fn verify(&self) -> Result<Event, Failure> {
        let policy = self.policy()?;
        let station = station_public(&policy)?;
        Ok(match verify(&policy.audit_log, station.as_ref()) {
            Ok(v) => Event::Verdict {
                intact: true,
                text: format!(
                    "INTACT: {} entries, {} checkpoints{}",
                    v.entries,
                    v.checkpoints,
                    if station.is_some() {
                        ", signatures checked"
                    } else {
                        ""
                    }
                ),
            },
            Err(e) => Event::Verdict {
                intact: false,
                text: format!("BROKEN at line {}: {}", e.line, e.problem),
            },
        })
    }
}

/// The audit line `seq`, as one line of text.
fn last_entry(log: &Path, seq: u64) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let e = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .find(|e| e.seq == seq)?;
    Some(format!(
        "line {}: {} {} by {}: {} {}",
        e.seq,
        utc(e.time),
        e.action,
        e.actor,
        e.outcome,
        e.subjects.join(" ")
    ))
}

/// Unix seconds as `YYYY-MM-DD HH:MM` UTC (days to civil date after
/// Howard Hinnant's algorithm).
pub(crate) fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Who unlocks `key`'s token, when it is quorum-unlocked.
fn quorum_view(key: &KeyRef) -> Option<super::app::QuorumView> {
    let KeyRef::Pkcs11(uri) = key else {
        return None;
    };
    let cfg = signer::keys::quorum::config(uri).ok()??;
    Some(super::app::QuorumView {
        threshold: usize::from(cfg.threshold),
        officers: cfg
            .officers
            .into_iter()
            .map(|o| (o.name, o.token))
            .collect(),
    })
}

/// The officers who unlocked their shares in the TUI, each with the PIN
/// they typed for their own token.
fn quorum_officers(unlock: Vec<super::app::Unlocker>) -> Vec<signer::keys::quorum::Officer> {
    unlock
        .into_iter()
        .map(|u| signer::keys::quorum::Officer {
            name: u.officer,
            token: signer::key_ref::Pkcs11Uri {
                token: signer::key_ref::TokenSelector::Label(u.token),
                object: None,
                id: None,
                module_path: None,
                pin: Some(PinSource::Value(u.pin)),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_and_times() {
        assert_eq!(
            signed_path(Path::new("/m/app.unsigned.bin")),
            Path::new("/m/app.signed.bin")
        );
        assert_eq!(
            signed_path(Path::new("/m/app.hex")),
            Path::new("/m/app.signed.hex")
        );
        assert_eq!(
            request_path(Path::new("/m/app.unsigned.bin")),
            Path::new("/m/app.unsigned.req.json")
        );
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_795_897_482), "2026-11-28 20:24");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
    }
}
