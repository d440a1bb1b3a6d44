//! E-mail: the [`Mailer`] (an SMTP transport, or `.eml` files under the data dir when no
//! mail server is configured), the templates, and queueing into the outbox that the
//! mailer actor (`actors::mailer`) drains.

pub mod config;
pub mod receipt;
pub mod templates;

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{FileTransport, SmtpTransport, Transport};
use rusqlite::Connection;

pub use config::MailConfig;
pub use templates::{render, Message};

use crate::db::mail::{self as mdb, OutboxMail};
use crate::db::{new_id, DbResult};
use crate::domain::time::now_ms;

/// How messages leave: SMTP, or files.
enum Sender {
    Files(PathBuf),
    Smtp(Box<SmtpTransport>),
}

/// Sends one message at a time (blocking: call off the async runtime).
pub struct Mailer {
    from: Mailbox,
    sender: Sender,
}

impl Mailer {
    /// The mailer `[mail]` describes; the file transport writes under `data_dir/mail`
    /// unless `mail.dir` says otherwise.
    pub fn from_config(config: &MailConfig, data_dir: &Path) -> Result<Mailer, String> {
        let from: Mailbox = config.from.parse().map_err(|e| format!("mail.from: {e}"))?;
        let sender = if config.transport == "smtp" {
            let host = config.smtp_host.trim();
            let builder = match config.smtp_tls.as_str() {
                "tls" => SmtpTransport::relay(host).map_err(|e| e.to_string())?,
                "none" => SmtpTransport::builder_dangerous(host),
                _ => SmtpTransport::starttls_relay(host).map_err(|e| e.to_string())?,
            };
            let mut builder = builder
                .port(config.smtp_port)
                .timeout(Some(Duration::from_secs(config.timeout_secs)));
            if !config.smtp_username.is_empty() {
                builder = builder.credentials(Credentials::new(
                    config.smtp_username.clone(),
                    config.smtp_password.clone(),
                ));
            }
            Sender::Smtp(Box::new(builder.build()))
        } else {
            let dir = if config.dir.trim().is_empty() {
                data_dir.join("mail")
            } else {
                PathBuf::from(&config.dir)
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            Sender::Files(dir)
        };
        Ok(Mailer { from, sender })
    }

    /// `smtp` or `file`.
    pub fn transport(&self) -> &'static str {
        match self.sender {
            Sender::Files(_) => "file",
            Sender::Smtp(_) => "smtp",
        }
    }

    /// Sends one outbox message; the error says why it did not leave.
    pub fn send(&self, mail: &OutboxMail) -> Result<(), String> {
        let to: Mailbox = mail
            .to_addr
            .parse()
            .map_err(|e| format!("bad recipient: {e}"))?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                mail.text_body.clone(),
                mail.html_body.clone(),
            ))
            .map_err(|e| format!("cannot build the message: {e}"))?;
        match &self.sender {
            Sender::Smtp(smtp) => smtp.send(&email).map(|_| ()).map_err(|e| e.to_string()),
            Sender::Files(dir) => {
                let id = FileTransport::new(dir)
                    .send(&email)
                    .map_err(|e| e.to_string())?;
                tracing::info!(to = %mail.to_addr, kind = %mail.kind,
                    file = %dir.join(format!("{id}.eml")).display(),
                    "mail written (no mail server configured)");
                Ok(())
            }
        }
    }
}

/// Renders `message` for `to` in `locale` and queues it, in the caller's transaction.
pub fn enqueue(conn: &Connection, to: &str, locale: &str, message: &Message) -> DbResult<String> {
    queue(conn, to, locale, message, None).map(|id| id.unwrap_or_default())
}

/// As [`enqueue`], at most once per `dedup_key` (a receipt per payment): `None` when a
/// message with that key was queued before.
pub fn enqueue_once(
    conn: &Connection,
    dedup_key: &str,
    to: &str,
    locale: &str,
    message: &Message,
) -> DbResult<Option<String>> {
    queue(conn, to, locale, message, Some(dedup_key))
}

fn queue(
    conn: &Connection,
    to: &str,
    locale: &str,
    message: &Message,
    dedup_key: Option<&str>,
) -> DbResult<Option<String>> {
    let rendered = render(message, locale);
    let now = now_ms();
    let mail = OutboxMail {
        id: new_id(),
        to_addr: to.to_string(),
        kind: message.kind().to_string(),
        locale: locale.to_string(),
        subject: rendered.subject,
        text_body: rendered.text,
        html_body: rendered.html,
        created_at: now,
        next_attempt_at: now,
        ..OutboxMail::default()
    };
    Ok(mdb::enqueue(conn, &mail, dedup_key)?.then_some(mail.id))
}

/// The locale a user's mail is written in: `user_metadata.locale` (`zh…` or `en…`),
/// else English.
pub fn user_locale(metadata: &serde_json::Value) -> &'static str {
    match metadata.get("locale").and_then(|l| l.as_str()) {
        Some(l) if l.to_ascii_lowercase().starts_with("zh") => "zh",
        _ => "en",
    }
}
