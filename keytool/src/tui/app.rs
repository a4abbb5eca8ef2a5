//! The TUI's state and its answers to key presses and finished jobs. Pure:
//! nothing here touches a file, a key or the clock. Every effect is an
//! [`Action`] handed back to the runtime, which runs it off the UI thread and
//! reports an [`Event`].

use std::path::PathBuf;

use policies::evaluate::Evaluation;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use secrecy::SecretString;
use zeroize::Zeroizing;

/// The longest PIN the TUI takes, in characters.
const MAX_PIN_CHARS: usize = 64;
/// Bytes reserved for a PIN being typed.
const PIN_CAPACITY: usize = 4 * MAX_PIN_CHARS;
/// The four screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Screen {
    Keys,
    Release,
    Provision,
    Audit,
}

impl Screen {
    pub(crate) const ALL: [Screen; 4] = [
        Screen::Keys,
        Screen::Release,
        Screen::Provision,
        Screen::Audit,
    ];

    pub(crate) fn title(self) -> &'static str {
        match self {
            Screen::Keys => "Keys",
            Screen::Release => "Release",
            Screen::Provision => "Provisioning",
            Screen::Audit => "Audit",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

/// A key the station knows, for the Keys screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRow {
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) uri: String,
    pub(crate) fingerprint: String,
}

/// An image file found on the media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRow {
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    /// What the header says, or why it cannot be released.
    pub(crate) summary: Result<ImageSummary, String>,
}

/// An unsigned image's header and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageSummary {
    pub(crate) version: String,
    pub(crate) security_counter: Option<u32>,
    pub(crate) size: u64,
    pub(crate) digest: String,
    pub(crate) protected_tlvs: Vec<String>,
}

/// One officer unlocking their share of a quorum token: their name, their
/// token's label, and the PIN they typed (never drawn, never in `Debug`).
#[derive(Debug, Clone)]
pub(crate) struct Unlocker {
    pub(crate) officer: String,
    pub(crate) token: String,
    pub(crate) pin: SecretString,
}

/// The quorum of a key's token (the release key's, the authority key's), as
/// the token publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuorumView {
    pub(crate) threshold: usize,
    /// (officer, token label), in share order.
    pub(crate) officers: Vec<(String, String)>,
}

/// What a quorum token is unlocked for: one job, then it is locked again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnlockFor {
    /// Sign this image's release with its release key.
    Release(PathBuf),
    /// Sign the records this file requests with the authority key.
    Records(PathBuf),
}

impl UnlockFor {
    /// Which key's token the officers unlock.
    pub(crate) fn key(&self) -> &'static str {
        match self {
            Self::Release(_) => "release key",
            Self::Records(_) => "authority key",
        }
    }
}

/// Collecting the shares that unlock a quorum token for one job.
#[derive(Debug)]
pub(crate) struct Unlock {
    pub(crate) job: UnlockFor,
    pub(crate) quorum: QuorumView,
    pub(crate) have: Vec<Unlocker>,
}

impl Unlock {
    /// Start collecting shares for `job` (the status line says why).
    fn start(job: UnlockFor, quorum: QuorumView) -> (String, Modal) {
        let status = format!(
            "the {}'s token is quorum-unlocked: {} of {} officers unlock it",
            job.key(),
            quorum.threshold,
            quorum.officers.len()
        );
        let modal = Modal::UnlockOfficer {
            unlock: Box::new(Self {
                job,
                quorum,
                have: Vec::new(),
            }),
            selected: 0,
        };
        (status, modal)
    }

    /// The job, once enough officers unlocked.
    fn into_action(self) -> Action {
        match self.job {
            UnlockFor::Release(image) => Action::Sign {
                image,
                unlock: self.have,
            },
            UnlockFor::Records(file) => Action::SignRecords {
                file,
                unlock: self.have,
            },
        }
    }

    /// The officers who have not unlocked yet.
    pub(crate) fn choices(&self) -> Vec<String> {
        self.quorum
            .officers
            .iter()
            .map(|(o, _)| o.clone())
            .filter(|o| !self.have.iter().any(|u| &u.officer == o))
            .collect()
    }
}

/// The release state of the selected image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ReleaseView {
    pub(crate) request: Option<PathBuf>,
    /// What an approval of the request shown would sign (the approval is
    /// refused if the file changed since).
    pub(crate) request_digest: Option<[u8; 32]>,
    /// The release key's token is quorum-unlocked: who unlocks it.
    pub(crate) quorum: Option<QuorumView>,
    pub(crate) approvals: Vec<String>,
    pub(crate) evaluation: Option<Evaluation>,
    /// Why there is no evaluation (no request yet, no policy, …).
    pub(crate) note: Option<String>,
}

/// One audit line, for browsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditRow {
    pub(crate) seq: u64,
    pub(crate) time: String,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) outcome: String,
    pub(crate) subjects: Vec<String>,
}

impl AuditRow {
    pub(crate) fn product(&self) -> Option<&str> {
        self.subjects
            .iter()
            .find_map(|s| s.strip_prefix("product:"))
    }
}

/// Work for the runtime.
#[derive(Debug)]
pub(crate) enum Action {
    LoadKeys,
    GenerateKey {
        uri: String,
    },
    ExportKey {
        name: String,
        uri: String,
        c_array: bool,
    },
    ScanImages,
    Inspect {
        image: PathBuf,
        product: String,
    },
    Request {
        image: PathBuf,
        product: String,
    },
    Approve {
        image: PathBuf,
        officer: String,
        pin: SecretString,
        /// The digest of the request on screen.
        shown: Option<[u8; 32]>,
    },
    Sign {
        image: PathBuf,
        /// For a release key in a quorum-unlocked token: the officers'
        /// shares, each unlocked by its officer's PIN.
        unlock: Vec<Unlocker>,
    },
    ScanRequests,
    SignRecords {
        file: PathBuf,
        /// For an authority key in a quorum-unlocked token: the officers'
        /// shares.
        unlock: Vec<Unlocker>,
    },
    LoadAudit,
    VerifyAudit,
    Quit,
}

/// What a job reports.
#[derive(Debug)]
pub(crate) enum Event {
    Keys(Vec<KeyRow>),
    Images(Vec<ImageRow>),
    Release(ReleaseView),
    Signed {
        output: PathBuf,
        entry: String,
    },
    Requests {
        files: Vec<PathBuf>,
        /// The authority key's token is quorum-unlocked: who unlocks it.
        quorum: Option<QuorumView>,
    },
    Progress {
        label: String,
        done: u64,
        total: u64,
    },
    RecordsDone {
        written: u64,
        out_dir: PathBuf,
    },
    Audit(Vec<AuditRow>),
    Verdict {
        intact: bool,
        text: String,
    },
    Info(String),
    Failed(String),
}

/// A dialog over the screen.
#[derive(Debug)]
pub(crate) enum Modal {
    /// Pick the officer who approves.
    Officer {
        choices: Vec<String>,
        selected: usize,
    },
    /// The officer types the PIN of their own token. Never drawn.
    Pin {
        officer: String,
        pin: Zeroizing<String>,
    },
    /// y / n.
    Confirm { text: String, action: Box<Action> },
    /// Pick the next officer to unlock the release key's quorum token.
    UnlockOfficer {
        unlock: Box<Unlock>,
        selected: usize,
    },
    /// That officer types the PIN of their own token. Never drawn.
    UnlockPin {
        unlock: Box<Unlock>,
        officer: String,
        pin: Zeroizing<String>,
    },
    /// A key URI for a new key.
    NewKey { uri: String },
}

/// A job under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Busy {
    pub(crate) label: String,
    pub(crate) done: u64,
    pub(crate) total: u64,
}

/// The whole UI state.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) screen: Screen,
    pub(crate) help: bool,
    pub(crate) locked: bool,
    pub(crate) modal: Option<Modal>,
    pub(crate) busy: Option<Busy>,
    pub(crate) status: String,
    pub(crate) products: Vec<String>,
    pub(crate) product: usize,
    /// Officers with a configured token, by product.
    pub(crate) officers: Vec<(String, Vec<String>)>,
    pub(crate) key_hint: String,
    pub(crate) keys: Vec<KeyRow>,
    pub(crate) key_selected: usize,
    pub(crate) images: Vec<ImageRow>,
    pub(crate) image_selected: usize,
    pub(crate) release: ReleaseView,
    pub(crate) signed: Option<(PathBuf, String)>,
    pub(crate) requests: Vec<PathBuf>,
    /// The authority key's token is quorum-unlocked: who unlocks it.
    pub(crate) records_quorum: Option<QuorumView>,
    pub(crate) request_selected: usize,
    pub(crate) records: Option<String>,
    pub(crate) audit: Vec<AuditRow>,
    pub(crate) audit_scroll: usize,
    pub(crate) product_filter: Option<String>,
    pub(crate) action_filter: Option<String>,
    pub(crate) verdict: Option<(bool, String)>,
}

fn step(index: &mut usize, len: usize, down: bool) {
    if len == 0 {
        *index = 0;
    } else if down {
        *index = (*index + 1).min(len - 1);
    } else {
        *index = index.saturating_sub(1);
    }
}

/// The next value in `values` after `current`, or none after the last.
fn cycle(current: &Option<String>, values: &[String]) -> Option<String> {
    match current {
        None => values.first().cloned(),
        Some(c) => values
            .iter()
            .position(|v| v == c)
            .and_then(|i| values.get(i + 1))
            .cloned(),
    }
}

impl App {
    /// A new UI for these products and officers; `key_hint` pre-fills a new
    /// key's URI.
    pub(crate) fn new(
        products: Vec<String>,
        officers: Vec<(String, Vec<String>)>,
        key_hint: String,
    ) -> Self {
        Self {
            screen: Screen::Release,
            help: false,
            locked: false,
            modal: None,
            busy: None,
            status: String::new(),
            products,
            product: 0,
            officers,
            key_hint,
            keys: Vec::new(),
            key_selected: 0,
            images: Vec::new(),
            image_selected: 0,
            release: ReleaseView::default(),
            signed: None,
            requests: Vec::new(),
            records_quorum: None,
            request_selected: 0,
            records: None,
            audit: Vec::new(),
            audit_scroll: 0,
            product_filter: None,
            action_filter: None,
            verdict: None,
        }
    }

    /// The actions that fill every screen at start.
    pub(crate) fn start(&self) -> Vec<Action> {
        vec![
            Action::LoadKeys,
            Action::ScanImages,
            Action::ScanRequests,
            Action::LoadAudit,
        ]
    }

    /// Show progress for a job that takes a while.
    pub(crate) fn started(&mut self, action: &Action) {
        let label = match action {
            Action::Request { .. } => "writing the request",
            Action::Approve { .. } => "approving (token)",
            Action::Sign { .. } => "signing",
            Action::SignRecords { .. } => "signing records",
            Action::GenerateKey { .. } => "generating the key",
            Action::ExportKey { .. } => "exporting",
            Action::VerifyAudit => "verifying the audit log",
            _ => return,
        };
        self.busy = Some(Busy {
            label: label.into(),
            done: 0,
            total: 1,
        });
    }

    /// Hide everything until a key is pressed; a half-typed PIN is dropped.
    pub(crate) fn lock(&mut self) {
        self.locked = true;
        self.modal = None;
        self.help = false;
    }

    pub(crate) fn product_name(&self) -> Option<&str> {
        self.products.get(self.product).map(String::as_str)
    }

    pub(crate) fn selected_image(&self) -> Option<&ImageRow> {
        self.images.get(self.image_selected)
    }

    /// The audit rows the filters let through.
    pub(crate) fn filtered_audit(&self) -> Vec<&AuditRow> {
        self.audit
            .iter()
            .filter(|r| {
                self.product_filter
                    .as_deref()
                    .is_none_or(|p| r.product() == Some(p))
                    && self.action_filter.as_deref().is_none_or(|a| r.action == a)
            })
            .collect()
    }

    fn inspect(&self) -> Vec<Action> {
        match (self.selected_image(), self.product_name()) {
            (Some(img), Some(p)) if img.summary.is_ok() => vec![Action::Inspect {
                image: img.path.clone(),
                product: p.to_owned(),
            }],
            _ => Vec::new(),
        }
    }

    /// Answer one key press.
    pub(crate) fn handle_key(&mut self, key: KeyEvent) -> Vec<Action> {
        if key.kind != KeyEventKind::Press {
            return Vec::new();
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return vec![Action::Quit];
        }
        if self.locked {
            if key.code == KeyCode::Enter {
                self.locked = false;
                self.status = "unlocked".into();
            }
            return Vec::new();
        }
        if let Some(modal) = self.modal.take() {
            return self.modal_key(modal, key);
        }
        if self.help {
            self.help = false;
            return Vec::new();
        }
        match key.code {
            KeyCode::Char('?') => {
                self.help = true;
                return Vec::new();
            }
            KeyCode::Char('q') => return vec![Action::Quit],
            KeyCode::Char('l') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.lock();
                return Vec::new();
            }
            KeyCode::Tab | KeyCode::BackTab => {
                let n = Screen::ALL.len();
                let i = self.screen.index();
                let next = if key.code == KeyCode::Tab {
                    i + 1
                } else {
                    i + n - 1
                };
                self.screen = Screen::ALL[next % n];
                return Vec::new();
            }
            KeyCode::Char(c @ '1'..='4') => {
                self.screen = Screen::ALL[usize::from(c as u8 - b'1')];
                return Vec::new();
            }
            _ => {}
        }
        let busy = self.busy.is_some();
        match self.screen {
            Screen::Keys => self.keys_key(key, busy),
            Screen::Release => self.release_key(key, busy),
            Screen::Provision => self.provision_key(key, busy),
            Screen::Audit => self.audit_key(key, busy),
        }
    }

    fn refuse_busy(&mut self) -> Vec<Action> {
        self.status = "busy: wait for the running job".into();
        Vec::new()
    }

    fn keys_key(&mut self, key: KeyEvent, busy: bool) -> Vec<Action> {
        match key.code {
            KeyCode::Up | KeyCode::Down => {
                step(
                    &mut self.key_selected,
                    self.keys.len(),
                    key.code == KeyCode::Down,
                );
                Vec::new()
            }
            _ if busy => self.refuse_busy(),
            KeyCode::Char('r') => vec![Action::LoadKeys],
            KeyCode::Char('g') => {
                self.modal = Some(Modal::NewKey {
                    uri: self.key_hint.clone(),
                });
                Vec::new()
            }
            KeyCode::Char(c @ ('e' | 'c')) => match self.keys.get(self.key_selected) {
                Some(k) => vec![Action::ExportKey {
                    name: k.name.clone(),
                    uri: k.uri.clone(),
                    c_array: c == 'c',
                }],
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn release_key(&mut self, key: KeyEvent, busy: bool) -> Vec<Action> {
        match key.code {
            KeyCode::Up | KeyCode::Down if !busy => {
                step(
                    &mut self.image_selected,
                    self.images.len(),
                    key.code == KeyCode::Down,
                );
                self.release = ReleaseView::default();
                self.signed = None;
                self.inspect()
            }
            _ if busy => self.refuse_busy(),
            KeyCode::Char('r') => vec![Action::ScanImages],
            KeyCode::Char('p') => {
                if !self.products.is_empty() {
                    self.product = (self.product + 1) % self.products.len();
                    self.release = ReleaseView::default();
                }
                self.inspect()
            }
            KeyCode::Enter => self.inspect(),
            KeyCode::Char('n') => match (self.selected_image(), self.product_name()) {
                (Some(img), Some(p)) if img.summary.is_ok() => vec![Action::Request {
                    image: img.path.clone(),
                    product: p.to_owned(),
                }],
                (Some(img), _) if img.summary.is_err() => {
                    self.status = format!("{} cannot be released", img.name);
                    Vec::new()
                }
                _ => Vec::new(),
            },
            KeyCode::Char('a') => {
                if self.release.request.is_none() {
                    self.status = "no request yet: press n to request this release".into();
                    return Vec::new();
                }
                let product = self.product_name().unwrap_or_default().to_owned();
                let choices: Vec<String> = self
                    .officers
                    .iter()
                    .find(|(p, _)| *p == product)
                    .map(|(_, o)| o.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| !self.release.approvals.contains(o))
                    .collect();
                if choices.is_empty() {
                    self.status = "no officer with a configured token is left to approve".into();
                } else {
                    self.modal = Some(Modal::Officer {
                        choices,
                        selected: 0,
                    });
                }
                Vec::new()
            }
            KeyCode::Char('s') => {
                let passed = self
                    .release
                    .evaluation
                    .as_ref()
                    .is_some_and(Evaluation::passed);
                match (self.selected_image(), self.product_name()) {
                    (Some(img), Some(_)) if passed && self.release.quorum.is_some() => {
                        let quorum = self.release.quorum.clone().unwrap_or(QuorumView {
                            threshold: 0,
                            officers: Vec::new(),
                        });
                        let (status, modal) =
                            Unlock::start(UnlockFor::Release(img.path.clone()), quorum);
                        self.status = status;
                        self.modal = Some(modal);
                    }
                    (Some(img), Some(p)) if passed => {
                        let text = format!(
                            "Sign {} for {p} with its release key? The signed image is written next to it.",
                            img.name
                        );
                        let action = Action::Sign {
                            image: img.path.clone(),
                            unlock: Vec::new(),
                        };
                        self.modal = Some(Modal::Confirm {
                            text,
                            action: Box::new(action),
                        });
                    }
                    _ => {
                        self.status = "the policy does not pass yet: see the failed rules".into();
                    }
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn provision_key(&mut self, key: KeyEvent, busy: bool) -> Vec<Action> {
        match key.code {
            KeyCode::Up | KeyCode::Down => {
                step(
                    &mut self.request_selected,
                    self.requests.len(),
                    key.code == KeyCode::Down,
                );
                Vec::new()
            }
            _ if busy => self.refuse_busy(),
            KeyCode::Char('r') => vec![Action::ScanRequests],
            KeyCode::Enter => {
                let Some(file) = self.requests.get(self.request_selected) else {
                    return Vec::new();
                };
                if let Some(quorum) = self.records_quorum.clone() {
                    let (status, modal) = Unlock::start(UnlockFor::Records(file.clone()), quorum);
                    self.status = status;
                    self.modal = Some(modal);
                } else {
                    let text = format!(
                        "Sign every provisioning record requested in {} with the authority key?",
                        file.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    );
                    self.modal = Some(Modal::Confirm {
                        text,
                        action: Box::new(Action::SignRecords {
                            file: file.clone(),
                            unlock: Vec::new(),
                        }),
                    });
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn audit_key(&mut self, key: KeyEvent, busy: bool) -> Vec<Action> {
        let len = self.filtered_audit().len();
        match key.code {
            KeyCode::Up | KeyCode::Down => {
                step(&mut self.audit_scroll, len, key.code == KeyCode::Down);
                Vec::new()
            }
            KeyCode::PageDown => {
                self.audit_scroll = (self.audit_scroll + 10).min(len.saturating_sub(1));
                Vec::new()
            }
            KeyCode::PageUp => {
                self.audit_scroll = self.audit_scroll.saturating_sub(10);
                Vec::new()
            }
            KeyCode::Char('f') => {
                let mut products: Vec<String> = self
                    .audit
                    .iter()
                    .filter_map(|r| r.product().map(str::to_owned))
                    .collect();
                products.sort();
                products.dedup();
                self.product_filter = cycle(&self.product_filter, &products);
                self.audit_scroll = 0;
                Vec::new()
            }
            KeyCode::Char('a') => {
                let mut actions: Vec<String> =
                    self.audit.iter().map(|r| r.action.clone()).collect();
                actions.sort();
                actions.dedup();
                self.action_filter = cycle(&self.action_filter, &actions);
                self.audit_scroll = 0;
                Vec::new()
            }
            _ if busy => self.refuse_busy(),
            KeyCode::Char('r') => vec![Action::LoadAudit],
            KeyCode::Char('v') => vec![Action::VerifyAudit],
            _ => Vec::new(),
        }
    }

    fn modal_key(&mut self, modal: Modal, key: KeyEvent) -> Vec<Action> {
        match modal {
            Modal::Officer {
                choices,
                mut selected,
            } => match key.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Up | KeyCode::Down => {
                    step(&mut selected, choices.len(), key.code == KeyCode::Down);
                    self.modal = Some(Modal::Officer { choices, selected });
                    Vec::new()
                }
                KeyCode::Enter => {
                    if let Some(officer) = choices.get(selected) {
                        self.modal = Some(Modal::Pin {
                            officer: officer.clone(),
                            // Room for the longest PIN accepted (64 characters
                            // of up to 4 bytes): typing never reallocates, so no
                            // copy of a partial PIN is left unwiped.
                            pin: Zeroizing::new(String::with_capacity(PIN_CAPACITY)),
                        });
                    }
                    Vec::new()
                }
                _ => {
                    self.modal = Some(Modal::Officer { choices, selected });
                    Vec::new()
                }
            },
            Modal::Pin { officer, mut pin } => match key.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter => {
                    let Some(img) = self.selected_image() else {
                        return Vec::new();
                    };
                    vec![Action::Approve {
                        image: img.path.clone(),
                        officer,
                        pin: SecretString::from(pin.as_str().to_owned()),
                        shown: self.release.request_digest,
                    }]
                }
                KeyCode::Backspace => {
                    pin.pop();
                    self.modal = Some(Modal::Pin { officer, pin });
                    Vec::new()
                }
                KeyCode::Char(c) if pin.chars().count() < MAX_PIN_CHARS => {
                    pin.push(c);
                    self.modal = Some(Modal::Pin { officer, pin });
                    Vec::new()
                }
                _ => {
                    self.modal = Some(Modal::Pin { officer, pin });
                    Vec::new()
                }
            },
            Modal::UnlockOfficer {
                unlock,
                mut selected,
            } => {
                let choices = unlock.choices();
                match key.code {
                    KeyCode::Esc => {
                        self.status = "cancelled".into();
                        Vec::new()
                    }
                    KeyCode::Up | KeyCode::Down => {
                        step(&mut selected, choices.len(), key.code == KeyCode::Down);
                        self.modal = Some(Modal::UnlockOfficer { unlock, selected });
                        Vec::new()
                    }
                    KeyCode::Enter => {
                        if let Some(officer) = choices.get(selected) {
                            self.modal = Some(Modal::UnlockPin {
                                unlock,
                                officer: officer.clone(),
                                pin: Zeroizing::new(String::with_capacity(PIN_CAPACITY)),
                            });
                        }
                        Vec::new()
                    }
                    _ => {
                        self.modal = Some(Modal::UnlockOfficer { unlock, selected });
                        Vec::new()
                    }
                }
            }
            Modal::UnlockPin {
                mut unlock,
                officer,
                mut pin,
            } => match key.code {
                KeyCode::Esc => {
                    self.status = "cancelled".into();
                    Vec::new()
                }
                KeyCode::Enter => {
                    let token = unlock
                        .quorum
                        .officers
                        .iter()
                        .find(|(o, _)| o == &officer)
                        .map(|(_, t)| t.clone())
                        .unwrap_or_default();
                    unlock.have.push(Unlocker {
                        officer,
                        token,
                        pin: SecretString::from(pin.as_str().to_owned()),
                    });
                    if unlock.have.len() >= unlock.quorum.threshold {
                        return vec![unlock.into_action()];
                    }
                    self.modal = Some(Modal::UnlockOfficer {
                        unlock,
                        selected: 0,
                    });
                    Vec::new()
                }
                KeyCode::Backspace => {
                    pin.pop();
                    self.modal = Some(Modal::UnlockPin {
                        unlock,
                        officer,
                        pin,
                    });
                    Vec::new()
                }
                KeyCode::Char(c) if pin.chars().count() < MAX_PIN_CHARS => {
                    pin.push(c);
                    self.modal = Some(Modal::UnlockPin {
                        unlock,
                        officer,
                        pin,
                    });
                    Vec::new()
                }
                _ => {
                    self.modal = Some(Modal::UnlockPin {
                        unlock,
                        officer,
                        pin,
                    });
                    Vec::new()
                }
            },
            Modal::Confirm { text, action } => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => vec![*action],
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                    self.status = "cancelled".into();
                    Vec::new()
                }
                _ => {
                    self.modal = Some(Modal::Confirm { text, action });
                    Vec::new()
                }
            },
            Modal::NewKey { mut uri } => match key.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter => {
                    let text = match uri.parse::<signer::KeyRef>() {
                        Ok(signer::KeyRef::Pkcs11(p)) => {
                            use signer::key_ref::TokenSelector;
                            let token = match &p.token {
                                TokenSelector::Label(l) => format!("token {l:?}"),
                                TokenSelector::Serial(s) => format!("the token with serial {s}"),
                                TokenSelector::SlotId(n) => format!("the token in slot {n}"),
                            };
                            format!(
                                "Generate a P-256 key labelled {:?} in {token}?",
                                p.object.unwrap_or_default()
                            )
                        }
                        Ok(other) => format!("Generate a P-256 key at {other}?"),
                        Err(e) => {
                            self.status = e.to_string();
                            self.modal = Some(Modal::NewKey { uri });
                            return Vec::new();
                        }
                    };
                    self.modal = Some(Modal::Confirm {
                        text,
                        action: Box::new(Action::GenerateKey { uri }),
                    });
                    Vec::new()
                }
                KeyCode::Backspace => {
                    uri.pop();
                    self.modal = Some(Modal::NewKey { uri });
                    Vec::new()
                }
                KeyCode::Char(c) => {
                    uri.push(c);
                    self.modal = Some(Modal::NewKey { uri });
                    Vec::new()
                }
                _ => {
                    self.modal = Some(Modal::NewKey { uri });
                    Vec::new()
                }
            },
        }
    }

    /// Take a job's report.
    pub(crate) fn on_event(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::Progress { label, done, total } => {
                self.busy = Some(Busy { label, done, total });
                return Vec::new();
            }
            Event::Keys(rows) => {
                self.keys = rows;
                self.key_selected = self.key_selected.min(self.keys.len().saturating_sub(1));
            }
            Event::Images(rows) => {
                self.images = rows;
                self.image_selected = self.image_selected.min(self.images.len().saturating_sub(1));
                self.busy = None;
                return self.inspect();
            }
            Event::Release(view) => self.release = view,
            Event::Signed { output, entry } => {
                self.status = format!("signed: {}", output.display());
                self.signed = Some((output, entry));
                self.busy = None;
                let mut next = self.inspect();
                next.push(Action::LoadAudit);
                return next;
            }
            Event::Requests { files, quorum } => {
                self.requests = files;
                self.records_quorum = quorum;
                self.request_selected = self
                    .request_selected
                    .min(self.requests.len().saturating_sub(1));
            }
            Event::RecordsDone { written, out_dir } => {
                self.records = Some(format!(
                    "{written} records signed into {}",
                    out_dir.display()
                ));
                self.status = self.records.clone().unwrap_or_default();
                self.busy = None;
                return vec![Action::LoadAudit];
            }
            Event::Audit(rows) => {
                self.audit = rows;
                self.audit_scroll = self
                    .audit_scroll
                    .min(self.filtered_audit().len().saturating_sub(1));
            }
            Event::Verdict { intact, text } => self.verdict = Some((intact, text)),
            Event::Info(text) => {
                self.status = text;
                self.busy = None;
                return match self.screen {
                    Screen::Release => {
                        let mut a = self.inspect();
                        a.push(Action::LoadAudit);
                        a
                    }
                    Screen::Keys => vec![Action::LoadKeys, Action::LoadAudit],
                    _ => vec![Action::LoadAudit],
                };
            }
            Event::Failed(text) => {
                self.status = format!("error: {text}");
                self.busy = None;
                return vec![Action::LoadAudit];
            }
        }
        self.busy = None;
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn app() -> App {
        let mut a = App::new(
            vec!["gateway".into(), "sensor".into()],
            vec![("sensor".into(), vec!["alice".into(), "bob".into()])],
            "pkcs11:token=release;object=".into(),
        );
        a.images = vec![ImageRow {
            path: "/media/app.unsigned.bin".into(),
            name: "app.unsigned.bin".into(),
            summary: Ok(ImageSummary {
                version: "1.2.0+0".into(),
                security_counter: Some(3),
                size: 4096,
                digest: "ab".repeat(32),
                protected_tlvs: vec!["SEC_CNT".into()],
            }),
        }];
        a
    }

    #[test]
    fn tabs_digits_and_help_move_between_screens() {
        let mut a = app();
        assert_eq!(a.screen, Screen::Release);
        a.handle_key(key(KeyCode::Tab));
        assert_eq!(a.screen, Screen::Provision);
        a.handle_key(key(KeyCode::BackTab));
        a.handle_key(key(KeyCode::BackTab));
        assert_eq!(a.screen, Screen::Keys);
        a.handle_key(key(KeyCode::Char('4')));
        assert_eq!(a.screen, Screen::Audit);
        a.handle_key(key(KeyCode::Char('?')));
        assert!(a.help);
        a.handle_key(key(KeyCode::Char('x')));
        assert!(!a.help);
        assert!(matches!(
            a.handle_key(key(KeyCode::Char('q')))[..],
            [Action::Quit]
        ));
    }

    #[test]
    fn an_approval_asks_for_the_officer_then_their_pin_and_never_keeps_it() {
        let mut a = app();
        a.product = 1;
        a.handle_key(key(KeyCode::Char('a')));
        assert!(a.modal.is_none() && a.status.contains("no request"));
        a.release.request = Some("/media/app.unsigned.req.json".into());
        a.release.request_digest = Some([0x42; 32]);
        a.release.approvals = vec!["alice".into()];
        a.handle_key(key(KeyCode::Char('a')));
        match &a.modal {
            Some(Modal::Officer { choices, .. }) => assert_eq!(choices, &["bob"]),
            other => panic!("{other:?}"),
        }
        a.handle_key(key(KeyCode::Enter));
        for c in "1234".chars() {
            a.handle_key(key(KeyCode::Char(c)));
        }
        a.handle_key(key(KeyCode::Backspace));
        a.handle_key(key(KeyCode::Char('9')));
        let actions = a.handle_key(key(KeyCode::Enter));
        match &actions[..] {
            [Action::Approve {
                officer,
                pin,
                shown,
                ..
            }] => {
                use secrecy::ExposeSecret;
                assert_eq!(officer.as_str(), "bob");
                assert_eq!(
                    *shown,
                    Some([0x42; 32]),
                    "the approval carries the request on screen"
                );
                assert_eq!(pin.expose_secret(), "1239");
                assert!(
                    !format!("{actions:?}").contains("1239"),
                    "the PIN is not in Debug"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(a.modal.is_none());
    }

    #[test]
    fn locking_drops_a_half_typed_pin_and_enter_unlocks() {
        let mut a = app();
        a.modal = Some(Modal::Pin {
            officer: "alice".into(),
            pin: Zeroizing::new("12".into()),
        });
        a.lock();
        assert!(a.locked && a.modal.is_none());
        assert!(
            a.handle_key(key(KeyCode::Char('q'))).is_empty(),
            "keys do nothing while locked"
        );
        a.handle_key(key(KeyCode::Enter));
        assert!(!a.locked);
    }

    #[test]
    fn a_quorum_release_key_collects_the_officers_shares_before_signing() {
        let mut a = app();
        a.product = 1;
        a.release.evaluation = Some(Evaluation {
            rules: vec![],
            kind: policies::evaluate::ReleaseKind::First,
            needed: 2,
            approvers: vec!["alice".into(), "bob".into()],
        });
        a.release.quorum = Some(QuorumView {
            threshold: 2,
            officers: vec![
                ("alice".into(), "alice-card".into()),
                ("bob".into(), "bob-card".into()),
                ("carol".into(), "carol-card".into()),
            ],
        });
        assert!(a.handle_key(key(KeyCode::Char('s'))).is_empty());
        assert!(a.status.contains("2 of 3 officers"), "{}", a.status);
        // alice, then carol (bob skipped with Down), each typing a PIN.
        a.handle_key(key(KeyCode::Enter));
        for c in "1111".chars() {
            a.handle_key(key(KeyCode::Char(c)));
        }
        assert!(
            a.handle_key(key(KeyCode::Enter)).is_empty(),
            "one share is not enough"
        );
        match &a.modal {
            Some(Modal::UnlockOfficer { unlock, .. }) => {
                assert_eq!(unlock.choices(), ["bob", "carol"], "alice is done")
            }
            other => panic!("{other:?}"),
        }
        a.handle_key(key(KeyCode::Down));
        a.handle_key(key(KeyCode::Enter));
        for c in "3333".chars() {
            a.handle_key(key(KeyCode::Char(c)));
        }
        let actions = a.handle_key(key(KeyCode::Enter));
        match &actions[..] {
            [Action::Sign { image, unlock }] => {
                use secrecy::ExposeSecret;
                assert!(image.ends_with("app.unsigned.bin"));
                let who: Vec<_> = unlock
                    .iter()
                    .map(|u| (u.officer.as_str(), u.token.as_str(), u.pin.expose_secret()))
                    .collect();
                assert_eq!(
                    who,
                    [
                        ("alice", "alice-card", "1111"),
                        ("carol", "carol-card", "3333")
                    ]
                );
                let shown = format!("{actions:?}");
                assert!(
                    !shown.contains("1111") && !shown.contains("3333"),
                    "{shown}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(a.modal.is_none());
    }

    #[test]
    fn a_quorum_authority_key_collects_shares_before_a_record_batch() {
        let mut a = app();
        a.screen = Screen::Provision;
        let file = PathBuf::from("/station/requests/line-7.jsonl");
        a.on_event(Event::Requests {
            files: vec![file.clone()],
            quorum: Some(QuorumView {
                threshold: 2,
                officers: vec![
                    ("alice".into(), "alice-card".into()),
                    ("bob".into(), "bob-card".into()),
                ],
            }),
        });
        assert!(a.handle_key(key(KeyCode::Enter)).is_empty());
        assert!(a.status.contains("authority key's token"), "{}", a.status);
        // Esc half-way drops what was typed; nothing is signed.
        a.handle_key(key(KeyCode::Enter));
        a.handle_key(key(KeyCode::Char('9')));
        assert!(a.handle_key(key(KeyCode::Esc)).is_empty());
        assert!(a.modal.is_none());
        a.handle_key(key(KeyCode::Enter));
        for pin in ["1111", "2222"] {
            a.handle_key(key(KeyCode::Enter));
            for c in pin.chars() {
                a.handle_key(key(KeyCode::Char(c)));
            }
            let actions = a.handle_key(key(KeyCode::Enter));
            if pin == "1111" {
                assert!(actions.is_empty(), "one share is not enough");
                continue;
            }
            match &actions[..] {
                [Action::SignRecords { file: f, unlock }] => {
                    assert_eq!(f, &file);
                    let who: Vec<_> = unlock.iter().map(|u| u.token.as_str()).collect();
                    assert_eq!(who, ["alice-card", "bob-card"]);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(a.modal.is_none());
    }

    #[test]
    fn signing_needs_a_passing_evaluation_and_a_confirmation() {
        let mut a = app();
        a.product = 1;
        assert!(a.handle_key(key(KeyCode::Char('s'))).is_empty());
        assert!(a.status.contains("does not pass"));
        a.release.evaluation = Some(Evaluation {
            rules: vec![],
            kind: policies::evaluate::ReleaseKind::First,
            needed: 2,
            approvers: vec!["alice".into(), "bob".into()],
        });
        assert!(a.handle_key(key(KeyCode::Char('s'))).is_empty());
        assert!(matches!(a.modal, Some(Modal::Confirm { .. })));
        assert!(
            a.handle_key(key(KeyCode::Char('x'))).is_empty(),
            "other keys wait"
        );
        let actions = a.handle_key(key(KeyCode::Char('y')));
        assert!(
            matches!(&actions[..], [Action::Sign { image, unlock }] if image.ends_with("app.unsigned.bin") && unlock.is_empty())
        );
    }

    #[test]
    fn a_new_key_is_confirmed_naming_token_and_label() {
        let mut a = app();
        a.screen = Screen::Keys;
        a.handle_key(key(KeyCode::Char('g')));
        for c in "fw-2027".chars() {
            a.handle_key(key(KeyCode::Char(c)));
        }
        a.handle_key(key(KeyCode::Enter));
        match &a.modal {
            Some(Modal::Confirm { text, .. }) => {
                assert!(
                    text.contains("\"fw-2027\"") && text.contains("token \"release\""),
                    "{text}"
                )
            }
            other => panic!("{other:?}"),
        }
        let actions = a.handle_key(key(KeyCode::Char('y')));
        assert!(
            matches!(&actions[..], [Action::GenerateKey { uri }] if uri.ends_with("object=fw-2027"))
        );
    }

    #[test]
    fn audit_filters_cycle_through_what_the_log_holds() {
        let mut a = app();
        a.screen = Screen::Audit;
        let row = |seq, action: &str, product: &str| AuditRow {
            seq,
            time: "t".into(),
            actor: "x".into(),
            action: action.into(),
            outcome: "ok".into(),
            subjects: vec![format!("product:{product}")],
        };
        a.on_event(Event::Audit(vec![
            row(1, "release.request", "sensor"),
            row(2, "release.sign", "sensor"),
            row(3, "release.sign", "gateway"),
        ]));
        a.handle_key(key(KeyCode::Char('f')));
        assert_eq!(a.product_filter.as_deref(), Some("gateway"));
        assert_eq!(a.filtered_audit().len(), 1);
        a.handle_key(key(KeyCode::Char('f')));
        a.handle_key(key(KeyCode::Char('a')));
        assert_eq!(a.filtered_audit().len(), 1, "sensor and release.request");
        a.handle_key(key(KeyCode::Char('f')));
        assert_eq!(a.product_filter, None);
        assert!(matches!(
            a.handle_key(key(KeyCode::Char('v')))[..],
            [Action::VerifyAudit]
        ));
    }

    #[test]
    fn a_running_job_blocks_new_jobs_but_not_navigation() {
        let mut a = app();
        a.on_event(Event::Progress {
            label: "signing".into(),
            done: 1,
            total: 10,
        });
        assert!(a.handle_key(key(KeyCode::Char('r'))).is_empty());
        assert!(a.status.contains("busy"));
        a.handle_key(key(KeyCode::Tab));
        assert_eq!(a.screen, Screen::Provision);
        a.on_event(Event::RecordsDone {
            written: 10,
            out_dir: "/out".into(),
        });
        assert!(a.busy.is_none());
    }
}
