//! Drawing the TUI. Everything reads without colour: the selected row is
//! marked with `>` and reversed, verdicts say PASS / FAIL, the current screen
//! is bracketed. Colour only repeats what the text already says.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Gauge, Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Modal, Screen};

const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);

/// Draw the whole screen.
pub(crate) fn draw(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    if app.locked {
        let text = vec![
            Line::from(""),
            Line::styled("STATION LOCKED", BOLD),
            Line::from(""),
            Line::from("Locked after inactivity; nothing is shown until you return."),
            Line::from("Press Enter to continue."),
        ];
        frame.render_widget(
            Paragraph::new(text)
                .centered()
                .block(Block::default().borders(Borders::ALL).title(" keytool ")),
            area,
        );
        return;
    }
    let [tabs, body, status, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_tabs(frame, tabs, app);
    match app.screen {
        Screen::Keys => draw_keys(frame, body, app),
        Screen::Release => draw_release(frame, body, app),
        Screen::Provision => draw_provision(frame, body, app),
        Screen::Audit => draw_audit(frame, body, app),
    }
    draw_status(frame, status, app);
    frame.render_widget(Paragraph::new(hint_line(app)), hints);
    if app.help {
        draw_help(frame, area, app);
    }
    if let Some(modal) = &app.modal {
        draw_modal(frame, area, modal);
    }
}

fn draw_tabs(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let mut spans = vec![Span::styled("keytool ", BOLD)];
    for (i, s) in Screen::ALL.iter().enumerate() {
        let label = format!("{} {}", i + 1, s.title());
        if *s == app.screen {
            spans.push(Span::styled(
                format!("[{label}]"),
                SELECTED.add_modifier(Modifier::BOLD),
            ));
        } else {
            spans.push(Span::raw(format!(" {label} ")));
        }
        spans.push(Span::raw(" "));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn hint_line(app: &App) -> String {
    let screen = match app.screen {
        Screen::Keys => "g generate  e PEM  c C array  r refresh",
        Screen::Release => "p product  n request  a approve  s sign  r rescan",
        Screen::Provision => "Enter sign batch  r rescan",
        Screen::Audit => "f product  a action  v verify  r reload",
    };
    format!("{screen}   ? help  q quit")
}

fn draw_status(frame: &mut Frame<'_>, area: Rect, app: &App) {
    if let Some(busy) = &app.busy {
        let ratio = if busy.total == 0 {
            0.0
        } else {
            busy.done as f64 / busy.total as f64
        };
        let gauge = Gauge::default()
            .ratio(ratio.clamp(0.0, 1.0))
            .label(format!("{}: {}/{}", busy.label, busy.done, busy.total))
            .gauge_style(Style::new().add_modifier(Modifier::REVERSED));
        frame.render_widget(gauge, area);
        return;
    }
    let style = if app.status.starts_with("error") {
        BOLD.fg(Color::Red)
    } else {
        Style::new()
    };
    frame.render_widget(
        Paragraph::new(Span::styled(app.status.clone(), style)),
        area,
    );
}

fn block(title: &str) -> Block<'_> {
    Block::default()
        .borders(Borders::ALL)
        .title(format!(" {title} "))
}

fn marker(selected: bool) -> &'static str {
    if selected {
        "> "
    } else {
        "  "
    }
}

fn short(fp: &str) -> String {
    match fp.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 16 => format!("{}…", &hex[..16]),
        _ => fp.to_owned(),
    }
}

fn draw_keys(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let mut lines = vec![Line::styled(
        format!(
            "  {:<16} {:<9} {:<18} {}",
            "NAME", "ROLE", "FINGERPRINT", "URI"
        ),
        BOLD,
    )];
    if app.keys.is_empty() {
        lines.push(Line::from(
            "  (no policy keys: configure policy = … in station.toml)",
        ));
    }
    for (i, k) in app.keys.iter().enumerate() {
        let sel = i == app.key_selected;
        let text = format!(
            "{}{:<16} {:<9} {:<18} {}",
            marker(sel),
            k.name,
            k.role,
            short(&k.fingerprint),
            k.uri
        );
        lines.push(if sel {
            Line::styled(text, SELECTED)
        } else {
            Line::from(text)
        });
    }
    frame.render_widget(Paragraph::new(lines).block(block("Keys and roles")), area);
}

fn draw_release(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let [left, right] =
        Layout::horizontal([Constraint::Length(28), Constraint::Min(30)]).areas(area);
    let mut items = Vec::new();
    if app.images.is_empty() {
        items.push(Line::from("(no .bin or .hex images)"));
    }
    for (i, img) in app.images.iter().enumerate() {
        let sel = i == app.image_selected;
        let flag = if img.summary.is_ok() { "" } else { " (x)" };
        let text = format!("{}{}{flag}", marker(sel), img.name);
        items.push(if sel {
            Line::styled(text, SELECTED)
        } else {
            Line::from(text)
        });
    }
    frame.render_widget(Paragraph::new(items).block(block("Images")), left);

    let mut lines = Vec::new();
    let product = app.product_name().unwrap_or("(no policy)");
    lines.push(Line::from(vec![
        Span::styled("Product   ", BOLD),
        Span::raw(product.to_owned()),
    ]));
    match app.selected_image() {
        None => lines.push(Line::from("Put the release media in and press r.")),
        Some(img) => match &img.summary {
            Err(e) => {
                lines.push(Line::from(format!("Image     {}", img.name)));
                lines.push(Line::styled(format!("Cannot release: {e}"), BOLD));
            }
            Ok(s) => {
                lines.push(Line::from(format!("Image     {}", img.name)));
                lines.push(Line::from(format!(
                    "Version   {}   security counter {}",
                    s.version,
                    s.security_counter
                        .map_or_else(|| "none".into(), |c| c.to_string())
                )));
                lines.push(Line::from(format!(
                    "Size      {} bytes   TLVs {}",
                    s.size,
                    if s.protected_tlvs.is_empty() {
                        "none".into()
                    } else {
                        s.protected_tlvs.join(",")
                    }
                )));
                // The whole digest, in groups, for comparing with the build's.
                let groups: Vec<&str> = (0..s.digest.len())
                    .step_by(16)
                    .filter_map(|i| s.digest.get(i..(i + 16).min(s.digest.len())))
                    .collect();
                let (first, second) = groups.split_at(groups.len().min(2));
                lines.push(Line::from(format!("Digest    {}", first.join(" "))));
                if !second.is_empty() {
                    lines.push(Line::from(format!("          {}", second.join(" "))));
                }
                let req = app
                    .release
                    .request
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map_or_else(|| "none".into(), |n| n.to_string_lossy().into_owned());
                lines.push(Line::from(format!("Request   {req}")));
                lines.push(Line::from(format!(
                    "Approvals {}",
                    if app.release.approvals.is_empty() {
                        "none".into()
                    } else {
                        app.release.approvals.join(", ")
                    }
                )));
                if let Some(note) = &app.release.note {
                    lines.push(Line::from(note.clone()));
                }
                if let Some(eval) = &app.release.evaluation {
                    let verdict = if eval.passed() {
                        "PASS: may be signed"
                    } else {
                        "FAIL: may not be signed"
                    };
                    lines.push(Line::styled(format!("Policy    {verdict}"), BOLD));
                    for r in &eval.rules {
                        let (word, colour) = if r.passed {
                            ("PASS", Color::Green)
                        } else {
                            ("FAIL", Color::Red)
                        };
                        lines.push(Line::from(vec![
                            Span::styled(
                                format!(" {word} "),
                                Style::new().fg(colour).add_modifier(Modifier::BOLD),
                            ),
                            Span::raw(format!("{:<22} {}", r.rule, r.detail)),
                        ]));
                    }
                }
            }
        },
    }
    if let Some((out, entry)) = &app.signed {
        lines.push(Line::styled(format!("SIGNED    {}", out.display()), BOLD));
        lines.push(Line::from(format!("Audit     {entry}")));
    }
    // Lines are clipped, not wrapped, so the rules keep one line each at
    // 80x24; `keytool release check` prints them whole.
    frame.render_widget(Paragraph::new(lines).block(block("Release")), right);
}

fn draw_provision(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let mut lines = vec![Line::styled(
        "Provisioning request files (one JSON line per device):",
        BOLD,
    )];
    if app.requests.is_empty() {
        lines.push(Line::from("  (no .jsonl files in the requests directory)"));
    }
    for (i, f) in app.requests.iter().enumerate() {
        let sel = i == app.request_selected;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = format!("{}{name}", marker(sel));
        lines.push(if sel {
            Line::styled(text, SELECTED)
        } else {
            Line::from(text)
        });
    }
    lines.push(Line::from(""));
    lines.push(Line::from(
        "Each record is signed with the policy's authority key, written to",
    ));
    lines.push(Line::from("FILE.records/HWID.rec and audited."));
    if let Some(r) = &app.records {
        lines.push(Line::from(""));
        lines.push(Line::styled(format!("Last batch: {r}"), BOLD));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block("Provisioning")),
        area,
    );
}

fn draw_audit(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let rows = app.filtered_audit();
    let mut lines = vec![Line::from(format!(
        "product: {}   action: {}   {} of {} entries",
        app.product_filter.as_deref().unwrap_or("all"),
        app.action_filter.as_deref().unwrap_or("all"),
        rows.len(),
        app.audit.len()
    ))];
    match &app.verdict {
        Some((intact, text)) => lines.push(Line::styled(
            format!("Chain: {text}"),
            BOLD.fg(if *intact { Color::Green } else { Color::Red }),
        )),
        None => lines.push(Line::from("Chain: not verified yet (v)")),
    }
    lines.push(Line::styled(
        format!(
            "  {:>5} {:<16} {:<12} {:<16} {}",
            "SEQ", "TIME (UTC)", "ACTOR", "ACTION", "OUTCOME / SUBJECTS"
        ),
        BOLD,
    ));
    let room = usize::from(area.height.saturating_sub(5));
    let start = app.audit_scroll.saturating_sub(room.saturating_sub(1));
    for (i, r) in rows.iter().enumerate().skip(start).take(room) {
        let sel = i == app.audit_scroll;
        let text = format!(
            "{}{:>5} {:<16} {:<12} {:<16} {} {}",
            marker(sel),
            r.seq,
            r.time,
            r.actor,
            r.action,
            r.outcome,
            r.subjects.join(" ")
        );
        lines.push(if sel {
            Line::styled(text, SELECTED)
        } else {
            Line::from(text)
        });
    }
    frame.render_widget(Paragraph::new(lines).block(block("Audit log")), area);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_modal(frame: &mut Frame<'_>, area: Rect, modal: &Modal) {
    let (title, lines): (&str, Vec<Line<'_>>) = match modal {
        Modal::Officer { choices, selected } => {
            let mut l = vec![Line::from("Which officer approves? (Enter, Esc)")];
            for (i, c) in choices.iter().enumerate() {
                let text = format!("{}{c}", marker(i == *selected));
                l.push(if i == *selected {
                    Line::styled(text, SELECTED)
                } else {
                    Line::from(text)
                });
            }
            ("Approve", l)
        }
        Modal::Pin { officer, pin } => (
            "Approve",
            vec![
                Line::from(format!("{officer}: enter the PIN of your own token.")),
                Line::from(format!("PIN: {}", "*".repeat(pin.len()))),
                Line::from("Enter to approve, Esc to cancel."),
            ],
        ),
        Modal::UnlockOfficer { unlock, selected } => {
            let mut l = vec![Line::from(format!(
                "The {}'s token needs {} of {} officers ({} so far). Who unlocks next? (Enter, Esc)",
                unlock.job.key(),
                unlock.quorum.threshold,
                unlock.quorum.officers.len(),
                unlock.have.len()
            ))];
            for (i, c) in unlock.choices().iter().enumerate() {
                let text = format!("{}{c}", marker(i == *selected));
                l.push(if i == *selected {
                    Line::styled(text, SELECTED)
                } else {
                    Line::from(text)
                });
            }
            ("Unlock", l)
        }
        Modal::UnlockPin { officer, pin, .. } => (
            "Unlock",
            vec![
                Line::from(format!(
                    "{officer}: enter the PIN of your own token to release your share."
                )),
                Line::from(format!("PIN: {}", "*".repeat(pin.chars().count()))),
                Line::from("Enter to unlock, Esc to cancel."),
            ],
        ),
        Modal::Confirm { text, .. } => (
            "Confirm",
            vec![
                Line::from(text.clone()),
                Line::from(""),
                Line::styled("[y] yes   [n] no", BOLD),
            ],
        ),
        Modal::NewKey { uri } => (
            "New key",
            vec![
                Line::from("Key URI (pkcs11:token=…;object=LABEL):"),
                Line::from(format!("{uri}_")),
                Line::from("Enter to continue, Esc to cancel."),
            ],
        ),
    };
    // Room for every line as wrapped inside the box.
    let inner = usize::from(area.width.min(66).saturating_sub(2)).max(1);
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
    let rect = centered(area, 66, (rows as u16).saturating_add(2).max(5));
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(title).style(BOLD)),
        rect,
    );
}

fn draw_help(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let screen: &[(&str, &str)] = match app.screen {
        Screen::Keys => &[
            ("Up/Down", "select a key"),
            ("g", "generate a key (confirmed, naming token and label)"),
            ("e / c", "export the public key as PEM / C array"),
            ("r", "reload"),
        ],
        Screen::Release => &[
            ("Up/Down", "select an image from the media"),
            ("p", "next product"),
            ("n", "request the release (written next to the image)"),
            ("a", "an officer approves with the PIN of their token"),
            ("s", "sign when the policy passes (confirmed)"),
            ("r", "rescan the media"),
        ],
        Screen::Provision => &[
            ("Up/Down", "select a request file"),
            ("Enter", "sign its records with the authority key"),
            ("r", "rescan"),
        ],
        Screen::Audit => &[
            ("Up/Down PgUp/PgDn", "scroll"),
            ("f / a", "filter by product / action"),
            ("v", "verify the chain and the signed head"),
            ("r", "reload"),
        ],
    };
    let mut lines: Vec<Line<'_>> = screen
        .iter()
        .map(|(k, v)| Line::from(format!("{k:<18} {v}")))
        .collect();
    lines.push(Line::from(""));
    for (k, v) in [
        ("1-4, Tab", "switch screen"),
        ("Ctrl-L", "lock the station now"),
        ("q, Ctrl-C", "quit"),
        ("any key", "close this help"),
    ] {
        lines.push(Line::from(format!("{k:<18} {v}")));
    }
    let rect = centered(area, 70, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(block(&format!("Keys: {}", app.screen.title()))),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::{AuditRow, Busy, ImageRow, ImageSummary, KeyRow, ReleaseView};
    use policies::evaluate::{Evaluation, ReleaseKind, RuleResult};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use zeroize::Zeroizing;

    fn render(app: &App, width: u16, height: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(width, height)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer();
        (0..height)
            .map(|y| {
                let line: String = (0..width).map(|x| buf[(x, y)].symbol()).collect();
                line.trim_end().to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn rule(rule: &'static str, passed: bool, detail: &str) -> RuleResult {
        RuleResult {
            rule,
            passed,
            detail: detail.into(),
        }
    }

    fn station() -> App {
        let mut a = App::new(
            vec!["gateway".into(), "sensor".into()],
            vec![("sensor".into(), vec!["alice".into(), "bob".into()])],
            "pkcs11:token=release;object=".into(),
        );
        a.product = 1;
        a.images = vec![
            ImageRow {
                path: "/media/sensor-1.3.0.unsigned.bin".into(),
                name: "sensor-1.3.0.unsigned.bin".into(),
                summary: Ok(ImageSummary {
                    version: "1.3.0+0".into(),
                    security_counter: Some(7),
                    size: 183_552,
                    digest: "3da4969eed3906415959bef6828886a700c83b233316e942a006105693aee95e"
                        .into(),
                    protected_tlvs: vec!["SEC_CNT".into()],
                }),
            },
            ImageRow {
                path: "/media/old.signed.bin".into(),
                name: "old.signed.bin".into(),
                summary: Err("the image is already signed".into()),
            },
        ];
        a.release = ReleaseView {
            request: Some("/media/sensor-1.3.0.unsigned.req.json".into()),
            request_digest: Some([7; 32]),
            quorum: None,
            approvals: vec!["alice".into()],
            evaluation: Some(Evaluation {
                rules: vec![
                    rule("product", true, "sensor"),
                    rule(
                        "release-key",
                        true,
                        "sensor-release (sha256:4ec6027b76f43b28…)",
                    ),
                    rule("image-matches-request", true, "version 1.3.0+0"),
                    rule("required-tlvs", true, "present: SEC_CNT"),
                    rule(
                        "slot-size",
                        true,
                        "signed image up to 0x2cc70 bytes, slot 0x6e000",
                    ),
                    rule("unexpired", true, "expires in 258000 s"),
                    rule("version", true, "1.3.0+0 after 1.2.0+0 (log line 11)"),
                    rule("approvals", false, "1 of 2 needed (alice)"),
                ],
                kind: ReleaseKind::Normal,
                needed: 2,
                approvers: vec!["alice".into()],
            }),
            note: None,
        };
        a.status = "alice approved; 1 approval(s) on the request".into();
        a
    }

    #[test]
    fn release_screen_shows_header_digest_and_every_rule() {
        insta::assert_snapshot!(render(&station(), 80, 24));
    }

    #[test]
    fn release_screen_after_signing() {
        let mut a = station();
        a.release.approvals.push("bob".into());
        if let Some(e) = &mut a.release.evaluation {
            e.rules[7] = rule("approvals", true, "2 of 2 needed (alice, bob)");
        }
        a.signed = Some((
            "/media/sensor-1.3.0.signed.bin".into(),
            "line 14: 2026-11-28 20:56 release.sign by station: ok".into(),
        ));
        a.status = "signed: /media/sensor-1.3.0.signed.bin".into();
        insta::assert_snapshot!(render(&a, 80, 24));
    }

    #[test]
    fn pin_entry_shows_only_stars() {
        let mut a = station();
        a.modal = Some(Modal::Pin {
            officer: "bob".into(),
            pin: Zeroizing::new("4711".into()),
        });
        let screen = render(&a, 80, 24);
        assert!(!screen.contains("4711"));
        insta::assert_snapshot!(screen);
    }

    #[test]
    fn keys_screen() {
        let mut a = station();
        a.screen = Screen::Keys;
        a.keys = vec![
            KeyRow {
                name: "sensor-release".into(),
                role: "release".into(),
                uri: "pkcs11:token=release;object=sensor-2026".into(),
                fingerprint:
                    "sha256:4ec6027b76f43b283cfe74570896b1bfa21147238fbbe4ebfcdf1c8a157db8ed".into(),
            },
            KeyRow {
                name: "factory-authority".into(),
                role: "authority".into(),
                uri: "pkcs11:token=factory;object=authority".into(),
                fingerprint:
                    "sha256:a7d14f10f14f374bdae0ed755f3e79984ff832d3b28d188efb57c39d03d69639".into(),
            },
            KeyRow {
                name: "alice".into(),
                role: "officer".into(),
                uri: "pkcs11:token=alice;object=approval".into(),
                fingerprint:
                    "sha256:0c1d4f10f14f374bdae0ed755f3e79984ff832d3b28d188efb57c39d03d69639".into(),
            },
        ];
        a.key_selected = 1;
        insta::assert_snapshot!(render(&a, 80, 24));
    }

    #[test]
    fn provisioning_screen_with_a_batch_under_way() {
        let mut a = station();
        a.screen = Screen::Provision;
        a.requests = vec![
            "/media/line-1-2026-11-28.jsonl".into(),
            "/media/line-2.jsonl".into(),
        ];
        a.busy = Some(Busy {
            label: "signing records (factory-authority)".into(),
            done: 37,
            total: 120,
        });
        insta::assert_snapshot!(render(&a, 80, 24));
    }

    #[test]
    fn audit_screen_filtered_and_verified() {
        let mut a = station();
        a.screen = Screen::Audit;
        let row = |seq, actor: &str, action: &str, outcome: &str, product: &str| AuditRow {
            seq,
            time: "2026-11-28 20:24".into(),
            actor: actor.into(),
            action: action.into(),
            outcome: outcome.into(),
            subjects: vec![format!("product:{product}"), "version:1.3.0+0".into()],
        };
        a.audit = vec![
            row(1, "station", "release.request", "ok", "sensor"),
            row(3, "alice", "release.approve", "ok", "sensor"),
            row(
                5,
                "station",
                "release.sign",
                "refused: approvals: 1 of 2 needed",
                "sensor",
            ),
            row(7, "station", "release.request", "ok", "gateway"),
        ];
        a.product_filter = Some("sensor".into());
        a.audit_scroll = 2;
        a.verdict = Some((
            true,
            "INTACT: 8 entries, 4 checkpoints, signatures checked".into(),
        ));
        insta::assert_snapshot!(render(&a, 80, 24));
    }

    #[test]
    fn help_lists_the_keys_of_the_screen() {
        let mut a = station();
        a.help = true;
        insta::assert_snapshot!(render(&a, 80, 24));
    }

    #[test]
    fn a_locked_station_shows_nothing() {
        let mut a = station();
        a.lock();
        let screen = render(&a, 80, 24);
        assert!(!screen.contains("sensor") && !screen.contains("3da4969e"));
        insta::assert_snapshot!(screen);
    }

    #[test]
    fn any_size_draws_without_panicking() {
        let mut a = station();
        for screen in Screen::ALL {
            a.screen = screen;
            for (w, h) in [(1, 1), (20, 6), (80, 24), (200, 60)] {
                render(&a, w, h);
            }
        }
    }
}
