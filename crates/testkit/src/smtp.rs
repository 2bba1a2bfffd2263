//! A small SMTP server for tests (RFC 5321 with RFC 4954 AUTH PLAIN and
//! LOGIN, no TLS): [`SmtpSink`] listens on 127.0.0.1, takes every mail it
//! is given and keeps it for the test to look at. It speaks what a real
//! client such as lettre needs: EHLO/HELO, AUTH, MAIL, RCPT, DATA (with
//! dot-unstuffing), RSET, NOOP, QUIT. Async tests start it on their own
//! runtime ([`SmtpSink::start`]); synchronous tests of the binary give it a
//! thread of its own ([`SmtpSink::spawn`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Longest command line the sink reads.
const MAX_LINE: usize = 4096;
/// Largest mail the sink keeps.
const MAX_DATA: usize = 64 * 1024 * 1024;

/// One mail the sink received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpMail {
    /// The `MAIL FROM` address (without `<>`).
    pub from: String,
    /// Each `RCPT TO` address.
    pub to: Vec<String>,
    /// The user name the client authenticated as, if it did.
    pub user: Option<String>,
    /// The message as sent after `DATA`, dot-unstuffed, without the final `.`.
    pub data: Vec<u8>,
}

/// What the sink has seen; shared with its tasks.
#[derive(Debug, Default)]
struct State {
    mails: Mutex<Vec<SmtpMail>>,
    connections: Mutex<usize>,
    arrived: Notify,
}

/// An SMTP server on 127.0.0.1 keeping what it receives; it stops when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<State>,
    runs: Runs,
}

/// Where the sink's accept loop runs.
#[derive(Debug)]
enum Runs {
    /// A task on the caller's runtime.
    Task(JoinHandle<()>),
    /// A thread with its own runtime, stopped through this sender.
    Thread(Option<tokio::sync::oneshot::Sender<()>>),
}

impl SmtpSink {
    /// Starts a sink on a free port of 127.0.0.1 that takes mail without AUTH.
    ///
    /// # Errors
    /// The bind error.
    pub async fn start() -> std::io::Result<SmtpSink> {
        SmtpSink::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), None).await
    }

    /// Starts a sink on `addr` (port 0: a free one). With `auth`, it offers
    /// AUTH PLAIN and LOGIN, accepts only that user name and password, and
    /// refuses `MAIL` before a successful AUTH.
    ///
    /// # Errors
    /// The bind error.
    pub async fn start_on(
        addr: SocketAddr,
        auth: Option<(&str, &str)>,
    ) -> std::io::Result<SmtpSink> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let auth = auth.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let task = tokio::spawn(serve(listener, Arc::clone(&state), auth));
        Ok(SmtpSink {
            addr,
            state,
            runs: Runs::Task(task),
        })
    }

    /// Starts a sink on a free port of 127.0.0.1 on a thread of its own,
    /// for tests without a tokio runtime (those that drive the binary);
    /// `auth` as for [`SmtpSink::start_on`].
    ///
    /// # Errors
    /// The runtime's or the bind's error.
    pub fn spawn(auth: Option<(&str, &str)>) -> std::io::Result<SmtpSink> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind(("127.0.0.1", 0)))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let auth = auth.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = serve(listener, Arc::clone(&state), auth);
        std::thread::spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    () = serving => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(SmtpSink {
            addr,
            state,
            runs: Runs::Thread(Some(stop)),
        })
    }

    /// [`SmtpSink::wait_for`] for synchronous tests: polls until at least
    /// `count` mails have arrived, up to `within`.
    pub fn wait_for_blocking(&self, count: usize, within: Duration) -> Option<Vec<SmtpMail>> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let mails = self.mails();
            if mails.len() >= count {
                return Some(mails);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every mail received so far, in order.
    pub fn mails(&self) -> Vec<SmtpMail> {
        self.state
            .mails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many connections clients have opened.
    pub fn connections(&self) -> usize {
        *self
            .state
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until at least `count` mails have arrived, up to `within`;
    /// returns them all, or `None` on timeout.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Option<Vec<SmtpMail>> {
        let wait = async {
            loop {
                let arrived = self.state.arrived.notified();
                let mails = self.mails();
                if mails.len() >= count {
                    return mails;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(within, wait).await.ok()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        match &mut self.runs {
            Runs::Task(task) => task.abort(),
            Runs::Thread(stop) => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
            }
        }
    }
}

/// Accepts connections and serves each on its own task.
async fn serve(listener: TcpListener, state: Arc<State>, auth: Option<(String, String)>) {
    while let Ok((stream, _)) = listener.accept().await {
        *state
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += 1;
        let state = Arc::clone(&state);
        let auth = auth.clone();
        tokio::spawn(async move {
            let _ = session(stream, &state, auth.as_ref()).await;
        });
    }
}

/// One client connection, until QUIT, EOF or an IO error.
async fn session(
    stream: TcpStream,
    state: &State,
    auth: Option<&(String, String)>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP testkit\r\n").await?;
    let mut user: Option<String> = None;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    loop {
        let Some(line) = read_line(&mut read).await? else {
            return Ok(());
        };
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        let reply: String = match verb {
            "EHLO" => {
                let mut r = String::from("250-sink.test\r\n250-8BITMIME\r\n");
                if auth.is_some() {
                    r.push_str("250-AUTH PLAIN LOGIN\r\n");
                }
                r.push_str("250 SIZE 67108864\r\n");
                r
            }
            "HELO" => "250 sink.test\r\n".into(),
            "AUTH" => match auth {
                None => "502 5.5.1 AUTH not offered\r\n".into(),
                Some(expected) => {
                    let got = authenticate(&line, &mut read, &mut write).await?;
                    match got {
                        Some((u, p)) if u == expected.0 && p == expected.1 => {
                            user = Some(u);
                            "235 2.7.0 Authentication successful\r\n".into()
                        }
                        _ => "535 5.7.8 Authentication credentials invalid\r\n".into(),
                    }
                }
            },
            "MAIL" if auth.is_some() && user.is_none() => {
                "530 5.7.0 Authentication required\r\n".into()
            }
            "MAIL" => {
                from = Some(path(&line));
                to.clear();
                "250 2.1.0 OK\r\n".into()
            }
            "RCPT" if from.is_none() => "503 5.5.1 MAIL first\r\n".into(),
            "RCPT" => {
                to.push(path(&line));
                "250 2.1.5 OK\r\n".into()
            }
            "DATA" if to.is_empty() => "503 5.5.1 RCPT first\r\n".into(),
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let Some(data) = read_data(&mut read).await? else {
                    return Ok(());
                };
                let mail = SmtpMail {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    user: user.clone(),
                    data,
                };
                state
                    .mails
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(mail);
                state.arrived.notify_waiters();
                "250 2.0.0 OK queued\r\n".into()
            }
            "RSET" => {
                from = None;
                to.clear();
                "250 2.0.0 OK\r\n".into()
            }
            "NOOP" => "250 2.0.0 OK\r\n".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Command not recognized\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// The rest of an AUTH exchange: `PLAIN [initial]` or `LOGIN [user]`.
/// Returns the user name and password given, or `None` if unreadable.
async fn authenticate<R, W>(
    line: &str,
    read: &mut BufReader<R>,
    write: &mut W,
) -> std::io::Result<Option<(String, String)>>
where
    R: AsyncRead + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut words = line.split_whitespace().skip(1);
    let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
    let initial = words.next().map(str::to_owned);
    let decode = |s: &str| -> Option<String> {
        BASE64
            .decode(s.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(r) => r,
                None => {
                    write.write_all(b"334 \r\n").await?;
                    read_line(read).await?.unwrap_or_default()
                }
            };
            // authzid NUL authcid NUL passwd (RFC 4616).
            Ok(decode(&response).and_then(|text| {
                let mut parts = text.split('\0').skip(1);
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            }))
        }
        "LOGIN" => {
            let user = match initial {
                Some(u) => u,
                None => {
                    write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                    read_line(read).await?.unwrap_or_default()
                }
            };
            write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            let password = read_line(read).await?.unwrap_or_default();
            Ok(decode(&user).zip(decode(&password)))
        }
        _ => Ok(None),
    }
}

/// The address in `MAIL FROM:<a@b> ...` or `RCPT TO:<a@b>`.
fn path(line: &str) -> String {
    match (line.find('<'), line.find('>')) {
        (Some(start), Some(end)) if start < end => line[start + 1..end].to_owned(),
        _ => line
            .split_once(':')
            .map_or("", |(_, rest)| rest.trim())
            .to_owned(),
    }
}

/// One line without its CRLF, or `None` at EOF; longer lines are cut.
async fn read_line<R: AsyncRead + Unpin>(
    read: &mut BufReader<R>,
) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = read_until_bounded(read, &mut buf, MAX_LINE).await?;
    if n == 0 {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
}

/// The DATA section up to `CRLF.CRLF`, dot-unstuffed; `None` at EOF.
async fn read_data<R: AsyncRead + Unpin>(
    read: &mut BufReader<R>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    loop {
        let mut line = Vec::new();
        if read_until_bounded(read, &mut line, MAX_DATA).await? == 0 {
            return Ok(None);
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(Some(data));
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        if data.len() + line.len() <= MAX_DATA {
            data.extend_from_slice(line);
        }
    }
}

/// Reads up to and including `\n`, keeping at most `limit` bytes.
async fn read_until_bounded<R: AsyncRead + Unpin>(
    read: &mut BufReader<R>,
    out: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = read.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let used = chunk.len();
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..used.min(room)]);
        read.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_from_either_form() {
        assert_eq!(path("MAIL FROM:<a@b.example> SIZE=10"), "a@b.example");
        assert_eq!(path("RCPT TO: c@d.example"), "c@d.example");
    }

    #[tokio::test]
    async fn a_plain_client_sends_a_mail() {
        let sink = SmtpSink::start().await.unwrap();
        let stream = TcpStream::connect(sink.addr()).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut expect = async |code: &str| {
            loop {
                let line = read_line(&mut read).await.unwrap().unwrap();
                assert!(line.starts_with(code), "{line}");
                if line.as_bytes().get(3) != Some(&b'-') {
                    break;
                }
            }
        };
        expect("220").await;
        for (cmd, code) in [
            ("EHLO t\r\n", "250"),
            ("MAIL FROM:<a@x.test>\r\n", "250"),
            ("RCPT TO:<b@x.test>\r\n", "250"),
            ("DATA\r\n", "354"),
            ("Subject: hi\r\n\r\n..dot\r\nend\r\n.\r\n", "250"),
            ("QUIT\r\n", "221"),
        ] {
            write.write_all(cmd.as_bytes()).await.unwrap();
            expect(code).await;
        }
        let mails = sink.wait_for(1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(mails[0].from, "a@x.test");
        assert_eq!(mails[0].to, ["b@x.test"]);
        assert_eq!(mails[0].data, b"Subject: hi\r\n\r\n.dot\r\nend\r\n");
        assert_eq!(mails[0].user, None);
    }

    #[test]
    fn a_sink_on_its_own_thread_serves_synchronous_tests() {
        use std::io::{BufRead, Write};
        let sink = SmtpSink::spawn(Some(("u", "p"))).unwrap();
        let stream = std::net::TcpStream::connect(sink.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut read = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut write = stream;
        let mut expect = |code: &str| {
            loop {
                let mut line = String::new();
                read.read_line(&mut line).unwrap();
                assert!(line.starts_with(code), "{line}");
                if line.as_bytes().get(3) != Some(&b'-') {
                    break;
                }
            }
        };
        expect("220");
        // AUTH PLAIN with "\0u\0p"; MAIL before AUTH is refused.
        for (cmd, code) in [
            ("EHLO t\r\n", "250"),
            ("MAIL FROM:<a@x.test>\r\n", "530"),
            ("AUTH PLAIN AHUAcA==\r\n", "235"),
            ("MAIL FROM:<a@x.test>\r\n", "250"),
            ("RCPT TO:<b@x.test>\r\n", "250"),
            ("DATA\r\n", "354"),
            ("Subject: hi\r\n\r\nbody\r\n.\r\n", "250"),
            ("QUIT\r\n", "221"),
        ] {
            write.write_all(cmd.as_bytes()).unwrap();
            expect(code);
        }
        let mails = sink
            .wait_for_blocking(1, Duration::from_secs(5))
            .expect("the mail");
        assert_eq!(mails[0].user.as_deref(), Some("u"));
        assert_eq!(mails[0].data, b"Subject: hi\r\n\r\nbody\r\n");
    }
}
