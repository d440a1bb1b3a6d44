//! Every message Atelier sends, in English and Chinese, in one place: a subject, a
//! plain-text body and an HTML body per kind and locale.

/// What a message is about, with what it needs to say.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A 6-digit code confirming an address (a new account's, or a new one for an
    /// account), valid for `minutes`.
    Confirmation { code: String, minutes: u64 },
    /// A 6-digit code to set a new password, valid for `minutes`.
    Recovery { code: String, minutes: u64 },
    /// A payment was received.
    Receipt {
        package: String,
        credits: i64,
        amount: String,
    },
    /// An operator alert (the operations hooks).
    Alert { title: String, detail: String },
}

impl Message {
    /// The short name stored in the outbox (`confirmation`, `recovery`, `receipt`, `alert`).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Confirmation { .. } => "confirmation",
            Message::Recovery { .. } => "recovery",
            Message::Receipt { .. } => "receipt",
            Message::Alert { .. } => "alert",
        }
    }
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `message` in `locale` (`zh…` → Chinese, anything else → English).
pub fn render(message: &Message, locale: &str) -> Rendered {
    let zh = locale.to_ascii_lowercase().starts_with("zh");
    let (subject, lines): (String, Vec<String>) = match (message, zh) {
        (Message::Confirmation { code, minutes }, false) => (
            "Confirm your e-mail address".into(),
            vec![
                format!("Your Atelier confirmation code is {code}."),
                format!("It expires in {minutes} minutes. If you did not ask for it, ignore this message."),
            ],
        ),
        (Message::Confirmation { code, minutes }, true) => (
            "确认您的邮箱地址".into(),
            vec![
                format!("您的 Atelier 验证码是 {code}。"),
                format!("验证码 {minutes} 分钟内有效。如果这不是您本人的操作，请忽略本邮件。"),
            ],
        ),
        (Message::Recovery { code, minutes }, false) => (
            "Reset your password".into(),
            vec![
                format!("Your Atelier password reset code is {code}."),
                format!("It expires in {minutes} minutes. If you did not ask for it, ignore this message."),
            ],
        ),
        (Message::Recovery { code, minutes }, true) => (
            "重置您的密码".into(),
            vec![
                format!("您的 Atelier 密码重置验证码是 {code}。"),
                format!("验证码 {minutes} 分钟内有效。如果这不是您本人的操作，请忽略本邮件。"),
            ],
        ),
        (
            Message::Receipt {
                package,
                credits,
                amount,
            },
            false,
        ) => (
            format!("Receipt: {package}"),
            vec![
                format!("Thank you for your purchase of {package} ({amount})."),
                format!("{credits} credits were added to your account."),
            ],
        ),
        (
            Message::Receipt {
                package,
                credits,
                amount,
            },
            true,
        ) => (
            format!("付款收据：{package}"),
            vec![
                format!("感谢您购买 {package}（{amount}）。"),
                format!("已向您的账户添加 {credits} 积分。"),
            ],
        ),
        (Message::Alert { title, detail }, false) => (
            format!("[Atelier alert] {title}"),
            vec![title.clone(), detail.clone()],
        ),
        (Message::Alert { title, detail }, true) => (
            format!("[Atelier 告警] {title}"),
            vec![title.clone(), detail.clone()],
        ),
    };
    let text = lines.join("\n\n") + "\n";
    let paragraphs: String = lines
        .iter()
        .map(|l| format!("<p>{}</p>", escape(l)))
        .collect();
    let html = format!(
        "<!doctype html><html lang=\"{}\"><body style=\"font-family:sans-serif\">{paragraphs}</body></html>",
        if zh { "zh" } else { "en" }
    );
    Rendered {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_both_languages_and_escaped_html() {
        let code = Message::Confirmation {
            code: "123456".into(),
            minutes: 10,
        };
        assert!(render(&code, "en").text.contains("123456"));
        assert!(render(&code, "zh-CN").subject.contains("邮箱"));
        let alert = Message::Alert {
            title: "<queue>".into(),
            detail: "a & b".into(),
        };
        let html = render(&alert, "en").html;
        assert!(html.contains("&lt;queue&gt;") && html.contains("a &amp; b"));
    }
}
