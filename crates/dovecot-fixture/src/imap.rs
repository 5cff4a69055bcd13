//! A deliberately tiny IMAP client for tests: line-level reads and writes (so tests can drive SASL
//! exchanges byte by byte), tagged commands with literal handling, a transcript of every line, and
//! the few commands the fixture needs to seed and inspect mailboxes (LOGIN, CREATE, APPEND,
//! EXAMINE, UID FETCH, LIST). It is not the project's IMAP client and must not grow into one.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::FixtureError;

/// How long one read may wait before the client gives up (a hung server must not hang a test).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Who sent a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by this client.
    Client,
    /// Received from the server.
    Server,
}

/// One line on the wire, without its CRLF. Literal payloads are recorded as their own entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptLine {
    /// Who sent it.
    pub direction: Direction,
    /// The bytes, CRLF stripped.
    pub bytes: Vec<u8>,
}

/// One untagged server response, with any literals it carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Untagged {
    /// The response as on the wire (literal contents included), CRLF stripped.
    pub raw: Vec<u8>,
    /// The literal payloads in order of appearance.
    pub literals: Vec<Vec<u8>>,
}

impl Untagged {
    /// The response as lossy UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// The complete answer to one tagged command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Untagged responses received before the tagged one.
    pub untagged: Vec<Untagged>,
    /// The tagged status line, e.g. `A3 OK Select completed (0.001 + 0.000 secs).`
    pub tagged: String,
}

impl Response {
    /// Whether the tagged status is `OK`.
    pub fn is_ok(&self) -> bool {
        self.tagged.split(' ').nth(1) == Some("OK")
    }
}

/// What the server reports about one message (from `UID FETCH 1:* (UID FLAGS RFC822.SIZE)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// The message's UID.
    pub uid: u32,
    /// Its flags as IMAP atoms, e.g. `\Seen`, `\Recent`, or keywords.
    pub flags: Vec<String>,
    /// `RFC822.SIZE`: the byte length of `BODY[]`.
    pub size: u64,
}

/// A line-oriented IMAP connection over any byte stream (plain TCP, or TLS set up by the caller).
#[derive(Debug)]
pub struct ImapConnection<S> {
    stream: BufReader<S>,
    next_tag: u32,
    transcript: Vec<TranscriptLine>,
}

impl ImapConnection<TcpStream> {
    /// Connects over plain TCP and reads the greeting, which must be `* OK`.
    pub async fn connect(host: &str, port: u16) -> Result<(Self, String), FixtureError> {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(FixtureError::io(format!("connect to {host}:{port}")))?;
        let mut conn = Self::new(tcp);
        let greeting = conn.read_greeting().await?;
        Ok((conn, greeting))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ImapConnection<S> {
    /// Wraps a stream on which nothing has been read yet.
    pub fn new(stream: S) -> Self {
        Self {
            stream: BufReader::new(stream),
            next_tag: 1,
            transcript: Vec::new(),
        }
    }

    /// Reads the server greeting and checks that it is `* OK`.
    pub async fn read_greeting(&mut self) -> Result<String, FixtureError> {
        let line = self.read_text_line().await?;
        if line.starts_with("* OK") {
            Ok(line)
        } else {
            Err(FixtureError::Imap {
                what: "read the IMAP greeting".into(),
                answer: line,
            })
        }
    }

    /// Every line sent and received so far.
    pub fn transcript(&self) -> &[TranscriptLine] {
        &self.transcript
    }

    /// Returns the next tag (`A1`, `A2`, ...) without sending anything.
    pub fn tag(&mut self) -> String {
        let tag = format!("A{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    /// Reads one line, CRLF stripped, with a 30 s timeout.
    pub async fn read_line(&mut self) -> Result<Vec<u8>, FixtureError> {
        let mut line = Vec::new();
        let read = tokio::time::timeout(READ_TIMEOUT, self.stream.read_until(b'\n', &mut line))
            .await
            .map_err(|_| FixtureError::Io {
                what: "read an IMAP line".into(),
                source: std::io::ErrorKind::TimedOut.into(),
            })?
            .map_err(FixtureError::io("read an IMAP line"))?;
        if read == 0 {
            return Err(FixtureError::Io {
                what: "read an IMAP line".into(),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        if line.ends_with(b"\n") {
            line.pop();
            if line.ends_with(b"\r") {
                line.pop();
            }
        }
        self.transcript.push(TranscriptLine {
            direction: Direction::Server,
            bytes: line.clone(),
        });
        Ok(line)
    }

    /// Reads one line as lossy UTF-8.
    pub async fn read_text_line(&mut self) -> Result<String, FixtureError> {
        Ok(String::from_utf8_lossy(&self.read_line().await?).into_owned())
    }

    /// Sends `bytes` followed by CRLF.
    pub async fn write_line(&mut self, bytes: &[u8]) -> Result<(), FixtureError> {
        self.transcript.push(TranscriptLine {
            direction: Direction::Client,
            bytes: bytes.to_vec(),
        });
        let stream = self.stream.get_mut();
        let mut out = Vec::with_capacity(bytes.len() + 2);
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
        stream
            .write_all(&out)
            .await
            .map_err(FixtureError::io("send an IMAP line"))?;
        stream
            .flush()
            .await
            .map_err(FixtureError::io("send an IMAP line"))
    }

    /// Reads untagged responses (with literals) until the line tagged `tag`.
    pub async fn read_response(&mut self, tag: &str) -> Result<Response, FixtureError> {
        let prefix = format!("{tag} ");
        let mut untagged = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.starts_with(prefix.as_bytes()) {
                return Ok(Response {
                    untagged,
                    tagged: String::from_utf8_lossy(&line).into_owned(),
                });
            }
            let mut item = Untagged {
                raw: line,
                literals: Vec::new(),
            };
            while let Some(len) = literal_len(&item.raw) {
                let mut literal = vec![0; len];
                tokio::time::timeout(READ_TIMEOUT, self.stream.read_exact(&mut literal))
                    .await
                    .map_err(|_| FixtureError::Io {
                        what: "read an IMAP literal".into(),
                        source: std::io::ErrorKind::TimedOut.into(),
                    })?
                    .map_err(FixtureError::io("read an IMAP literal"))?;
                self.transcript.push(TranscriptLine {
                    direction: Direction::Server,
                    bytes: format!("<literal of {len} bytes>").into_bytes(),
                });
                item.raw.extend_from_slice(b"\r\n");
                item.raw.extend_from_slice(&literal);
                item.literals.push(literal);
                let rest = self.read_line().await?;
                item.raw.extend_from_slice(&rest);
            }
            untagged.push(item);
        }
    }

    /// Sends `<tag> <command>` and reads the whole response.
    pub async fn command(&mut self, command: &str) -> Result<Response, FixtureError> {
        let tag = self.tag();
        self.write_line(format!("{tag} {command}").as_bytes())
            .await?;
        self.read_response(&tag).await
    }

    /// Like [`command`](Self::command) but fails unless the tagged answer is `OK`.
    pub async fn command_ok(
        &mut self,
        command: &str,
        what: &str,
    ) -> Result<Response, FixtureError> {
        let response = self.command(command).await?;
        if response.is_ok() {
            Ok(response)
        } else {
            Err(FixtureError::Imap {
                what: what.to_owned(),
                answer: response.tagged,
            })
        }
    }

    /// `LOGIN user password` (both sent as quoted strings).
    pub async fn login(&mut self, user: &str, password: &str) -> Result<Response, FixtureError> {
        self.command_ok(
            &format!("LOGIN {} {}", quote(user), quote(password)),
            &format!("log in as {user}"),
        )
        .await
    }

    /// `APPEND folder (flags) {n}` with a synchronising literal; returns the tagged line
    /// (Dovecot's carries `[APPENDUID validity uid]`).
    pub async fn append(
        &mut self,
        folder: &str,
        flags: &[&str],
        message: &[u8],
    ) -> Result<String, FixtureError> {
        let tag = self.tag();
        let what = format!("append a message to {folder:?}");
        let line = format!(
            "{tag} APPEND {} ({}) {{{}}}",
            quote(folder),
            flags.join(" "),
            message.len()
        );
        self.write_line(line.as_bytes()).await?;
        let cont = self.read_text_line().await?;
        if !cont.starts_with('+') {
            return Err(FixtureError::Imap { what, answer: cont });
        }
        self.transcript.push(TranscriptLine {
            direction: Direction::Client,
            bytes: format!("<literal of {} bytes>", message.len()).into_bytes(),
        });
        let stream = self.stream.get_mut();
        let mut out = message.to_vec();
        out.extend_from_slice(b"\r\n");
        stream
            .write_all(&out)
            .await
            .map_err(FixtureError::io("send an APPEND literal"))?;
        stream
            .flush()
            .await
            .map_err(FixtureError::io("send an APPEND literal"))?;
        let response = self.read_response(&tag).await?;
        if response.is_ok() {
            Ok(response.tagged)
        } else {
            Err(FixtureError::Imap {
                what,
                answer: response.tagged,
            })
        }
    }

    /// `UID FETCH 1:* (UID FLAGS RFC822.SIZE)` on the selected mailbox, in UID order.
    pub async fn message_infos(&mut self) -> Result<Vec<MessageInfo>, FixtureError> {
        let response = self
            .command_ok(
                "UID FETCH 1:* (UID FLAGS RFC822.SIZE)",
                "fetch message flags",
            )
            .await?;
        let mut infos: Vec<MessageInfo> = response
            .untagged
            .iter()
            .filter_map(|item| parse_fetch_info(&item.text()))
            .collect();
        infos.sort_by_key(|info| info.uid);
        Ok(infos)
    }

    /// `UID FETCH uid BODY.PEEK[]` on the selected mailbox: the exact bytes of the message.
    pub async fn fetch_body(&mut self, uid: u32) -> Result<Vec<u8>, FixtureError> {
        let what = format!("fetch the body of UID {uid}");
        let response = self
            .command_ok(&format!("UID FETCH {uid} BODY.PEEK[]"), &what)
            .await?;
        response
            .untagged
            .into_iter()
            .find(|item| item.text().contains(" FETCH ") && !item.literals.is_empty())
            .and_then(|mut item| item.literals.pop())
            .ok_or(FixtureError::Imap {
                what,
                answer: "no FETCH response with a literal".into(),
            })
    }

    /// `LIST "" "*"`: every folder name, unquoted, in server order.
    pub async fn list_folders(&mut self) -> Result<Vec<String>, FixtureError> {
        let response = self.command_ok("LIST \"\" \"*\"", "list folders").await?;
        Ok(response
            .untagged
            .iter()
            .filter_map(|item| parse_list_name(&item.text()))
            .collect())
    }

    /// `LOGOUT`, ignoring the answer (the server may already be gone).
    pub async fn logout(&mut self) {
        let _ = self.command("LOGOUT").await;
    }

    /// Returns the stream, e.g. to wrap it in TLS after `STARTTLS`. Fails if the server already
    /// sent bytes that would be lost (a STARTTLS injection).
    pub fn into_inner(self) -> Result<S, FixtureError> {
        if self.stream.buffer().is_empty() {
            Ok(self.stream.into_inner())
        } else {
            Err(FixtureError::Imap {
                what: "hand the stream over for TLS".into(),
                answer: String::from_utf8_lossy(self.stream.buffer()).into_owned(),
            })
        }
    }
}

/// IMAP quoted string.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `{n}` at the end of a line announces a literal of n bytes.
fn literal_len(line: &[u8]) -> Option<usize> {
    let rest = line.strip_suffix(b"}")?;
    let open = rest.iter().rposition(|&b| b == b'{')?;
    let digits = rest[open + 1..]
        .strip_suffix(b"+")
        .unwrap_or(&rest[open + 1..]);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Parses `* 3 FETCH (UID 5 FLAGS (\Seen) RFC822.SIZE 123)` in any item order.
fn parse_fetch_info(text: &str) -> Option<MessageInfo> {
    let body = text.strip_prefix("* ")?.split_once(" FETCH (")?.1;
    let number_after = |key: &str| -> Option<u64> {
        let start = body.find(key)? + key.len();
        body[start..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let flags_start = body.find("FLAGS (")? + "FLAGS (".len();
    let flags_end = flags_start + body[flags_start..].find(')')?;
    Some(MessageInfo {
        uid: u32::try_from(number_after("UID ")?).ok()?,
        flags: body[flags_start..flags_end]
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        size: number_after("RFC822.SIZE ")?,
    })
}

/// Parses `* LIST (\HasNoChildren) "." INBOX` or `... "." "Sent Items"`.
fn parse_list_name(text: &str) -> Option<String> {
    let rest = text.strip_prefix("* LIST (")?;
    let after_attrs = rest.split_once(") ")?.1;
    let name = if let Some(quoted_sep) = after_attrs.strip_prefix('"') {
        quoted_sep.split_once("\" ")?.1
    } else {
        after_attrs.split_once(' ')?.1 // NIL separator
    };
    Some(
        match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
            Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
            None => name.to_owned(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_info_known_answers() {
        let info = parse_fetch_info(r"* 2 FETCH (UID 7 FLAGS (\Seen \Recent) RFC822.SIZE 1234)")
            .expect("parse");
        assert_eq!(
            info,
            MessageInfo {
                uid: 7,
                flags: vec![r"\Seen".into(), r"\Recent".into()],
                size: 1234
            }
        );
        let info = parse_fetch_info("* 1 FETCH (RFC822.SIZE 9 FLAGS () UID 1)").expect("parse");
        assert_eq!(
            info,
            MessageInfo {
                uid: 1,
                flags: vec![],
                size: 9
            }
        );
        assert!(parse_fetch_info("* 1 EXISTS").is_none());
    }

    #[test]
    fn list_name_known_answers() {
        assert_eq!(
            parse_list_name(r#"* LIST (\HasNoChildren) "." INBOX"#).as_deref(),
            Some("INBOX")
        );
        assert_eq!(
            parse_list_name(r#"* LIST (\HasNoChildren \Sent) "." "Sent Items""#).as_deref(),
            Some("Sent Items")
        );
        assert_eq!(
            parse_list_name("* LIST () NIL Archive").as_deref(),
            Some("Archive")
        );
        assert!(parse_list_name("* OK hi").is_none());
    }

    #[test]
    fn literal_lengths() {
        assert_eq!(literal_len(b"* 1 FETCH (UID 1 BODY[] {42}"), Some(42));
        assert_eq!(literal_len(b"A1 APPEND INBOX {5+}"), Some(5));
        assert_eq!(literal_len(b"* OK done"), None);
        assert_eq!(literal_len(b"* OK {x}"), None);
    }

    #[test]
    fn quoting_escapes_backslash_and_quote() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[tokio::test]
    async fn reads_literals_inside_a_response() {
        let (client, mut server) = tokio::io::duplex(4096);
        server
            .write_all(b"* 1 FETCH (UID 3 BODY[] {5}\r\nab\r\nc)\r\nA1 OK done\r\n")
            .await
            .expect("write");
        let mut conn = ImapConnection::new(client);
        let response = conn.read_response("A1").await.expect("response");
        assert!(response.is_ok());
        assert_eq!(response.untagged.len(), 1);
        assert_eq!(response.untagged[0].literals, vec![b"ab\r\nc".to_vec()]);
        assert_eq!(
            response.untagged[0].raw,
            b"* 1 FETCH (UID 3 BODY[] {5}\r\nab\r\nc)".to_vec()
        );
    }
}
