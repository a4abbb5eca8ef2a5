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
    format!("{screen}  | ? help  Tab screens  ^L lock  q quit")
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
                lines.push(Line::from(format!("Digest    {}", s.digest)));
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
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block("Release")),
        right,
    );
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
    let height = lines.len() as u16 + 2;
    let rect = centered(area, 66, height.max(5));
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
