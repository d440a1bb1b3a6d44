//! A small SMTP server on 127.0.0.1 for tests: it speaks enough of RFC 5321 (EHLO, AUTH
//! PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT) for a real client and keeps every
//! message it accepted. `down()` makes it refuse connections' mail until `up()`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The raw message (headers and body) as sent in DATA.
    pub data: String,
    /// Whether the client authenticated first.
    pub authenticated: bool,
}

/// A running fake SMTP server.
#[derive(Clone)]
pub struct FakeSmtp {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    refusing: Arc<AtomicBool>,
}

impl FakeSmtp {
    /// Every message accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Answer 421 to every new connection (as a server that is down for maintenance).
    pub fn down(&self) {
        self.refusing.store(true, Ordering::SeqCst);
    }

    /// Accept mail again.
    pub fn up(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }

    /// Waits (10 s at most) until `n` messages have arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {n} mails arrived",
                got.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl FakeSmtp {
    /// Points `config`'s mailer at this server (SMTP without TLS, short timeouts and
    /// retries, as a test wants them).
    pub fn configure(&self, config: &mut atelier::config::Config) {
        config.mail.transport = "smtp".into();
        config.mail.smtp_host = "127.0.0.1".into();
        config.mail.smtp_port = self.port;
        config.mail.smtp_tls = "none".into();
        config.mail.timeout_secs = 2;
        config.mail.retry_base_secs = 1;
    }

    /// Serves the received messages over HTTP on 127.0.0.1 for a test client in another
    /// process (the supabase-js tests): `GET /messages?to=ADDR` answers
    /// `[{"to": [...], "data": "..."}]`, oldest first. Answers the base URL.
    pub async fn serve_http(&self) -> String {
        use warp::Filter;
        let server = self.clone();
        let route = warp::path!("messages")
            .and(warp::query::<std::collections::HashMap<String, String>>())
            .map(move |query: std::collections::HashMap<String, String>| {
                let to = query.get("to").cloned().unwrap_or_default();
                let mails: Vec<serde_json::Value> = server
                    .received()
                    .into_iter()
                    .filter(|m| to.is_empty() || m.to.iter().any(|t| t.eq_ignore_ascii_case(&to)))
                    .map(|m| serde_json::json!({"to": m.to, "data": m.data}))
                    .collect();
                warp::reply::json(&mails)
            });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(warp::serve(route).incoming(listener).run());
        format!("http://{addr}")
    }
}

/// Starts the server on an ephemeral port.
pub async fn start() -> FakeSmtp {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let fake = FakeSmtp {
        port: listener.local_addr().expect("addr").port(),
        received: Arc::default(),
        refusing: Arc::default(),
    };
    let server = fake.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                let _ = session(socket, server).await;
            });
        }
    });
    fake
}

async fn session(socket: tokio::net::TcpStream, server: FakeSmtp) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    if server.refusing.load(Ordering::SeqCst) {
        write
            .write_all(b"421 fake.smtp Service not available\r\n")
            .await?;
        return Ok(());
    }
    write.write_all(b"220 fake.smtp ESMTP ready\r\n").await?;
    let (mut from, mut to, mut authenticated) = (String::new(), Vec::new(), false);
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        let answer: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250-fake.smtp\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("AUTH PLAIN") {
            authenticated = true;
            b"235 2.7.0 Authentication successful\r\n"
        } else if upper.starts_with("AUTH LOGIN") {
            for prompt in [&b"334 VXNlcm5hbWU6\r\n"[..], b"334 UGFzc3dvcmQ6\r\n"] {
                write.write_all(prompt).await?;
                line.clear();
                lines.read_line(&mut line).await?;
            }
            authenticated = true;
            b"235 2.7.0 Authentication successful\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = command[10..].trim().to_string();
            b"250 2.1.0 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(command[8..].trim().trim_matches(['<', '>']).to_string());
            b"250 2.1.5 OK\r\n"
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(
                    line.strip_prefix('.')
                        .filter(|_| line.starts_with(".."))
                        .unwrap_or(&line),
                );
            }
            server.received.lock().unwrap().push(Received {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
                authenticated,
            });
            b"250 2.0.0 OK queued\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 2.0.0 OK\r\n"
        } else {
            b"502 5.5.2 Command not recognized\r\n"
        };
        write.write_all(answer).await?;
    }
}
