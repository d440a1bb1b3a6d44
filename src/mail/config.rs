//! `[mail]`: how Atelier sends e-mail.

use serde::{Deserialize, Serialize};

/// `[mail]`: the transport (`file` writes `.eml` files, `smtp` sends), the sender, and
/// the outbox's retries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// `file` (default: each message becomes an `.eml` file under `dir`) or `smtp`.
    pub transport: String,
    /// The sender, e.g. `Atelier <noreply@example.com>`.
    pub from: String,
    /// Where the `file` transport writes; empty means `<data dir>/mail`.
    pub dir: String,
    /// SMTP server host name.
    pub smtp_host: String,
    /// SMTP port (587 for STARTTLS, 465 for TLS, 25 without).
    pub smtp_port: u16,
    /// `starttls`, `tls` (implicit, port 465) or `none` (plain text: local relays only).
    pub smtp_tls: String,
    /// SMTP user name (no authentication when empty).
    pub smtp_username: String,
    /// SMTP password (hidden in `atelier config check`).
    pub smtp_password: String,
    /// Longest SMTP conversation, in seconds.
    pub timeout_secs: u64,
    /// Attempts per message before it is marked failed.
    pub max_attempts: u32,
    /// First retry delay in seconds; doubles with each attempt.
    pub retry_base_secs: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            transport: "file".into(),
            from: "Atelier <noreply@localhost>".into(),
            dir: String::new(),
            smtp_host: String::new(),
            smtp_port: 587,
            smtp_tls: "starttls".into(),
            smtp_username: String::new(),
            smtp_password: String::new(),
            timeout_secs: 20,
            max_attempts: 6,
            retry_base_secs: 30,
        }
    }
}

impl MailConfig {
    /// Checks the rules serde cannot express: `(key, why)` on the first problem.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !matches!(self.transport.as_str(), "file" | "smtp") {
            return Err(("mail.transport", "expected \"file\" or \"smtp\""));
        }
        if !matches!(self.smtp_tls.as_str(), "starttls" | "tls" | "none") {
            return Err((
                "mail.smtp_tls",
                "expected \"starttls\", \"tls\" or \"none\"",
            ));
        }
        if self.transport == "smtp" && self.smtp_host.trim().is_empty() {
            return Err(("mail.smtp_host", "needed when transport = \"smtp\""));
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(("mail.from", "not an e-mail address"));
        }
        if self.max_attempts == 0 || self.timeout_secs == 0 {
            return Err((
                "mail.max_attempts",
                "max_attempts and timeout_secs must be at least 1",
            ));
        }
        Ok(())
    }
}
