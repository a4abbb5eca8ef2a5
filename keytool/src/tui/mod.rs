//! `keytool tui`: the security officer's station in a terminal (ratatui).
//!
//! [`app`] holds the state and answers key presses without doing anything;
//! [`worker`] runs what they ask for on its own thread; [`view`] draws. The
//! loop here only moves keys, jobs and results between them, and locks the
//! screen when nobody has touched it for `idle_lock`.

pub(crate) mod app;
pub(crate) mod config;
pub(crate) mod view;
mod worker;

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use policies::policy::Policy;
use ratatui::crossterm::event::{self, Event as TermEvent};
use signer::KeyRef;

use crate::failure::{CmdResult, Failure};
use crate::station::session::Context;
use app::{Action, App};
use config::StationConfig;

/// `keytool tui`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The station's configuration (docs/tui.md); without it: the current
    /// directory, and the policy from --policy / KEYTOOL_POLICY.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl Args {
    pub(crate) fn run(self, ctx: &Context) -> CmdResult {
        let mut config = match &self.config {
            Some(path) => StationConfig::load(path).map_err(Failure::usage)?,
            None => StationConfig::here(None),
        };
        if config.policy.is_none() {
            config.policy.clone_from(&ctx.policy);
        }
        run(config)
    }
}

/// The app for a station: its products, and for each the officers who have
/// a token configured; a new key's URI starts in the first token the policy
/// names.
fn new_app(config: &StationConfig) -> Result<App, Failure> {
    let policy = config
        .policy
        .as_deref()
        .map(Policy::load)
        .transpose()
        .map_err(Failure::usage)?;
    let (products, officers, hint) = match &policy {
        None => (Vec::new(), Vec::new(), "pkcs11:token=;object=".to_owned()),
        Some(p) => {
            let officers = p
                .products
                .iter()
                .map(|(name, prod)| {
                    let with_token = prod
                        .officers
                        .iter()
                        .filter(|o| config.officers.contains_key(*o))
                        .cloned()
                        .collect();
                    (name.clone(), with_token)
                })
                .collect();
            let hint = p
                .keys
                .values()
                .find_map(|k| match &k.uri {
                    KeyRef::Pkcs11(_) => {
                        let uri = k.uri.to_string();
                        uri.find(";object=")
                            .map(|i| format!("{};object=", &uri[..i]))
                    }
                    _ => None,
                })
                .unwrap_or_else(|| "pkcs11:token=;object=".into());
            (p.products.keys().cloned().collect(), officers, hint)
        }
    };
    Ok(App::new(products, officers, hint))
}

fn run(config: StationConfig) -> CmdResult {
    let mut app = new_app(&config)?;
    let idle = config.idle_lock;
    let (jobs, job_rx) = mpsc::channel::<Action>();
    let (event_tx, events) = mpsc::channel();
    let worker = std::thread::spawn(move || worker::serve(config, job_rx, event_tx));
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, &mut app, &jobs, &events, idle);
    ratatui::restore();
    // A job under way finishes (and is audited) before the station exits.
    drop(jobs);
    let _ = worker.join();
    result
}

fn send(app: &mut App, jobs: &mpsc::Sender<Action>, actions: Vec<Action>) -> bool {
    for a in actions {
        if matches!(a, Action::Quit) {
            return false;
        }
        app.started(&a);
        if jobs.send(a).is_err() {
            return false;
        }
    }
    true
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    jobs: &mpsc::Sender<Action>,
    events: &mpsc::Receiver<app::Event>,
    idle: Duration,
) -> CmdResult {
    let start = app.start();
    send(app, jobs, start);
    let mut last_input = Instant::now();
    loop {
        terminal
            .draw(|f| view::draw(f, app))
            .map_err(Failure::failed)?;
        if event::poll(Duration::from_millis(100)).map_err(Failure::failed)? {
            if let TermEvent::Key(key) = event::read().map_err(Failure::failed)? {
                last_input = Instant::now();
                let actions = app.handle_key(key);
                if !send(app, jobs, actions) {
                    return Ok(());
                }
            }
        }
        while let Ok(ev) = events.try_recv() {
            let actions = app.on_event(ev);
            if !send(app, jobs, actions) {
                return Ok(());
            }
        }
        if !app.locked && last_input.elapsed() >= idle {
            app.lock();
        }
    }
}
