//! Parsing of framed server responses into the few shapes the session needs: continuation,
//! tagged and untagged status (with the response code kept apart from the text, so failures are
//! classified by code), CAPABILITY, EXISTS / RECENT / EXPUNGE, FETCH and LIST. Everything else is
//! kept as `Other` and ignored by callers.

use super::ProtocolError;
use super::frame::{RawResponse, Segment};

/// The status word of a status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`
    Ok,
    /// `NO`
    No,
    /// `BAD`
    Bad,
    /// `BYE` (untagged only)
    Bye,
    /// `PREAUTH` (greeting only)
    Preauth,
}

impl Status {
    /// The status word as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
            Status::Preauth => "PREAUTH",
        }
    }
}

/// A status response: status, optional `[code]` and human text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusResponse {
    /// OK, NO, BAD, BYE or PREAUTH.
    pub status: Status,
    /// What was between `[` and `]`, e.g. `UNAVAILABLE` or `UIDVALIDITY 42`.
    pub code: Option<String>,
    /// The text after the code.
    pub text: String,
}

impl StatusResponse {
    /// The response code's name, upper-cased (`UNAVAILABLE`, `CAPABILITY`, ...).
    pub fn code_name(&self) -> Option<String> {
        self.code
            .as_deref()
            .and_then(|c| c.split_ascii_whitespace().next())
            .map(str::to_ascii_uppercase)
    }

    /// The response code's arguments (`42` of `UIDVALIDITY 42`).
    pub fn code_args(&self) -> &str {
        self.code
            .as_deref()
            .and_then(|c| c.split_once(' '))
            .map_or("", |(_, rest)| rest.trim())
    }

    /// The capabilities in a `[CAPABILITY ...]` code.
    pub fn capabilities(&self) -> Option<Vec<String>> {
        (self.code_name().as_deref() == Some("CAPABILITY")).then(|| words(self.code_args()))
    }
}

impl std::fmt::Display for StatusResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.status.as_str())?;
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// The data of one FETCH response (only the items we ask for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchData {
    /// `UID`
    pub uid: Option<u32>,
    /// `FLAGS`
    pub flags: Option<Vec<String>>,
    /// `RFC822.SIZE`
    pub size: Option<u64>,
    /// `BODY[]` (or `RFC822`)
    pub body: Option<Vec<u8>>,
}

/// A parsed server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `+ text` (text may be empty).
    Continuation(String),
    /// `TAG OK|NO|BAD ...`
    Tagged {
        /// The command tag.
        tag: String,
        /// Status, code and text.
        status: StatusResponse,
    },
    /// `* OK|NO|BAD|BYE|PREAUTH ...`
    Status(StatusResponse),
    /// `* CAPABILITY ...`
    Capability(Vec<String>),
    /// `* n EXISTS`
    Exists(u32),
    /// `* n RECENT`
    Recent(u32),
    /// `* n EXPUNGE`
    Expunge(u32),
    /// `* n FETCH (...)`
    Fetch {
        /// Message sequence number.
        seq: u32,
        /// The items we understand.
        data: FetchData,
    },
    /// `* LIST (flags) delim name`: the (encoded) mailbox name.
    List(String),
    /// Anything else (first line).
    Other(String),
}

/// Parses one framed response; literals move into the result, uncopied.
pub fn parse(mut raw: RawResponse) -> Result<Response, ProtocolError> {
    let raw = &mut raw;
    let first = match raw.segments.first() {
        Some(Segment::Text(t)) => t.as_slice(),
        _ => return Err(malformed(raw)),
    };
    let line = String::from_utf8_lossy(first).into_owned();
    if let Some(rest) = line.strip_prefix('+') {
        return Ok(Response::Continuation(
            rest.strip_prefix(' ').unwrap_or(rest).to_owned(),
        ));
    }
    let (tag, rest) = line.split_once(' ').ok_or_else(|| malformed(raw))?;
    if tag != "*" {
        if tag.is_empty() {
            return Err(malformed(raw));
        }
        let status = parse_status(rest).ok_or_else(|| malformed(raw))?;
        return Ok(Response::Tagged {
            tag: tag.to_owned(),
            status,
        });
    }
    if let Some(status) = parse_status(rest) {
        return Ok(Response::Status(status));
    }
    let (word, args) = rest.split_once(' ').unwrap_or((rest, ""));
    if word.eq_ignore_ascii_case("CAPABILITY") {
        return Ok(Response::Capability(words(args)));
    }
    if word.eq_ignore_ascii_case("LIST") || word.eq_ignore_ascii_case("LSUB") {
        return parse_list(raw).ok_or_else(|| malformed(raw));
    }
    if let Ok(n) = word.parse::<u32>() {
        let (kind, _) = args.split_once(' ').unwrap_or((args, ""));
        match kind.to_ascii_uppercase().as_str() {
            "EXISTS" => return Ok(Response::Exists(n)),
            "RECENT" => return Ok(Response::Recent(n)),
            "EXPUNGE" => return Ok(Response::Expunge(n)),
            "FETCH" => {
                let data = parse_fetch(raw).ok_or_else(|| malformed(raw))?;
                return Ok(Response::Fetch { seq: n, data });
            }
            _ => {}
        }
    }
    Ok(Response::Other(line))
}

fn malformed(raw: &RawResponse) -> ProtocolError {
    let mut line = raw.first_line();
    if line.len() > 200 {
        let mut cut = 200;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    ProtocolError::Malformed(line)
}

fn words(text: &str) -> Vec<String> {
    text.split_ascii_whitespace().map(str::to_owned).collect()
}

fn parse_status(rest: &str) -> Option<StatusResponse> {
    let (word, after) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = match word.to_ascii_uppercase().as_str() {
        "OK" => Status::Ok,
        "NO" => Status::No,
        "BAD" => Status::Bad,
        "BYE" => Status::Bye,
        "PREAUTH" => Status::Preauth,
        _ => return None,
    };
    let (code, text) = match after.strip_prefix('[') {
        Some(inner) => match inner.find(']') {
            Some(end) => (Some(inner[..end].to_owned()), inner[end + 1..].trim_start()),
            None => (None, after),
        },
        None => (None, after),
    };
    Some(StatusResponse {
        status,
        code,
        text: text.to_owned(),
    })
}

/// A lexical token of the data part of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Atom(String),
    Quoted(Vec<u8>),
    Literal(Vec<u8>),
}

/// Tokenizes text segments and yields literal segments as tokens (moved out of the segments).
struct Lexer<'a> {
    segments: &'a mut [Segment],
    seg: usize,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(segments: &'a mut [Segment], pos: usize) -> Self {
        Self {
            segments,
            seg: 0,
            pos,
        }
    }

    fn next_token(&mut self) -> Option<Token> {
        loop {
            match self.segments.get_mut(self.seg)? {
                Segment::Literal(bytes) => {
                    let bytes = std::mem::take(bytes);
                    self.seg += 1;
                    self.pos = 0;
                    return Some(Token::Literal(bytes));
                }
                Segment::Text(text) => {
                    while self.pos < text.len() && text[self.pos] == b' ' {
                        self.pos += 1;
                    }
                    if self.pos >= text.len() {
                        self.seg += 1;
                        self.pos = 0;
                        continue;
                    }
                    return Some(Self::lex_text(&mut self.pos, text));
                }
            }
        }
    }

    fn lex_text(pos: &mut usize, text: &[u8]) -> Token {
        match text[*pos] {
            b'(' => {
                *pos += 1;
                Token::Open
            }
            b')' => {
                *pos += 1;
                Token::Close
            }
            b'"' => {
                *pos += 1;
                let mut out = Vec::new();
                while *pos < text.len() {
                    match text[*pos] {
                        b'\\' if *pos + 1 < text.len() => {
                            out.push(text[*pos + 1]);
                            *pos += 2;
                        }
                        b'"' => {
                            *pos += 1;
                            break;
                        }
                        b => {
                            out.push(b);
                            *pos += 1;
                        }
                    }
                }
                Token::Quoted(out)
            }
            _ => {
                let start = *pos;
                let mut depth = 0usize;
                while *pos < text.len() {
                    match text[*pos] {
                        b'[' => depth += 1,
                        b']' => depth = depth.saturating_sub(1),
                        b' ' | b'(' | b')' if depth == 0 => break,
                        _ => {}
                    }
                    *pos += 1;
                }
                Token::Atom(String::from_utf8_lossy(&text[start..*pos]).into_owned())
            }
        }
    }

    /// Skips one value (an atom, string, literal or a parenthesised list).
    fn skip_value(&mut self) -> Option<()> {
        match self.next_token()? {
            Token::Open => {
                let mut depth = 1usize;
                while depth > 0 {
                    match self.next_token()? {
                        Token::Open => depth += 1,
                        Token::Close => depth -= 1,
                        _ => {}
                    }
                }
                Some(())
            }
            Token::Close => None,
            _ => Some(()),
        }
    }
}

/// Where the data of `* n WORD <data>` starts in the first text segment.
fn data_start(raw: &RawResponse, words_before: usize) -> Option<usize> {
    let Some(Segment::Text(first)) = raw.segments.first() else {
        return None;
    };
    let mut pos = 0;
    for _ in 0..words_before {
        pos += first[pos..].iter().position(|&b| b == b' ')? + 1;
    }
    Some(pos)
}

fn parse_fetch(raw: &mut RawResponse) -> Option<FetchData> {
    let start = data_start(raw, 3)?;
    let mut lexer = Lexer::new(&mut raw.segments, start);
    if lexer.next_token()? != Token::Open {
        return None;
    }
    let mut data = FetchData::default();
    loop {
        let name = match lexer.next_token()? {
            Token::Close => return Some(data),
            Token::Atom(name) => name.to_ascii_uppercase(),
            _ => return None,
        };
        match name.as_str() {
            "UID" => data.uid = Some(number(lexer.next_token()?)?),
            "RFC822.SIZE" => data.size = Some(number(lexer.next_token()?)?),
            "FLAGS" => {
                if lexer.next_token()? != Token::Open {
                    return None;
                }
                let mut flags = Vec::new();
                loop {
                    match lexer.next_token()? {
                        Token::Close => break,
                        Token::Atom(flag) => flags.push(flag),
                        _ => return None,
                    }
                }
                data.flags = Some(flags);
            }
            "BODY[]" | "RFC822" | "BINARY[]" => {
                data.body = match lexer.next_token()? {
                    Token::Literal(bytes) | Token::Quoted(bytes) => Some(bytes),
                    Token::Atom(nil) if nil.eq_ignore_ascii_case("NIL") => None,
                    _ => return None,
                };
            }
            _ => lexer.skip_value()?,
        }
    }
}

fn number<T: std::str::FromStr>(token: Token) -> Option<T> {
    match token {
        Token::Atom(text) => text.parse().ok(),
        _ => None,
    }
}

fn parse_list(raw: &mut RawResponse) -> Option<Response> {
    let start = data_start(raw, 2)?;
    let mut lexer = Lexer::new(&mut raw.segments, start);
    lexer.skip_value()?; // flags
    lexer.skip_value()?; // delimiter
    let name = match lexer.next_token()? {
        Token::Atom(a) => a.into_bytes(),
        Token::Quoted(b) | Token::Literal(b) => b,
        _ => return None,
    };
    Some(Response::List(String::from_utf8_lossy(&name).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::super::frame::{FrameLimits, Framer, Progress};
    use super::*;

    fn framed(bytes: &[u8]) -> RawResponse {
        match Framer::new(FrameLimits::default()).advance(&mut bytes.to_vec()) {
            Ok(Progress::Complete(raw)) => raw,
            other => panic!("incomplete: {other:?}"),
        }
    }

    fn parse_bytes(bytes: &[u8]) -> Response {
        parse(framed(bytes)).unwrap()
    }

    #[test]
    fn status_responses_keep_the_code_apart() {
        assert_eq!(
            parse_bytes(b"A1 NO [UNAVAILABLE] Temporary authentication failure. [vm:2026-01-01 00:00:00]\r\n"),
            Response::Tagged {
                tag: "A1".into(),
                status: StatusResponse {
                    status: Status::No,
                    code: Some("UNAVAILABLE".into()),
                    text: "Temporary authentication failure. [vm:2026-01-01 00:00:00]".into(),
                },
            }
        );
        let Response::Tagged { status, .. } = parse_bytes(b"A2 NO AUTHENTICATE failed.\r\n") else {
            panic!()
        };
        assert_eq!(status.code, None);
        assert_eq!(status.text, "AUTHENTICATE failed.");
        let Response::Status(ok) = parse_bytes(b"* OK [UIDVALIDITY 1795825029] UIDs valid\r\n")
        else {
            panic!()
        };
        assert_eq!(ok.code_name().as_deref(), Some("UIDVALIDITY"));
        assert_eq!(ok.code_args(), "1795825029");
        let Response::Tagged { status, .. } =
            parse_bytes(b"A1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n")
        else {
            panic!()
        };
        assert_eq!(
            status.capabilities().unwrap(),
            vec!["IMAP4rev1", "IDLE", "MOVE"]
        );
        assert_eq!(
            status.to_string(),
            "OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in"
        );
    }

    #[test]
    fn bye_continuation_capability_and_counts() {
        let Response::Status(bye) =
            parse_bytes(b"* BYE Session invalidated - AccessTokenExpired\r\n")
        else {
            panic!()
        };
        assert_eq!(bye.status, Status::Bye);
        assert_eq!(
            parse_bytes(b"+ \r\n"),
            Response::Continuation(String::new())
        );
        assert_eq!(parse_bytes(b"+\r\n"), Response::Continuation(String::new()));
        assert_eq!(
            parse_bytes(b"+ eyJ9\r\n"),
            Response::Continuation("eyJ9".into())
        );
        assert_eq!(
            parse_bytes(b"* CAPABILITY IMAP4rev1 AUTH=XOAUTH2\r\n"),
            Response::Capability(vec!["IMAP4rev1".into(), "AUTH=XOAUTH2".into()])
        );
        assert_eq!(parse_bytes(b"* 3 EXISTS\r\n"), Response::Exists(3));
        assert_eq!(parse_bytes(b"* 0 RECENT\r\n"), Response::Recent(0));
        assert_eq!(parse_bytes(b"* 2 EXPUNGE\r\n"), Response::Expunge(2));
        assert_eq!(
            parse_bytes(b"* FLAGS (\\Seen)\r\n"),
            Response::Other("* FLAGS (\\Seen)".into())
        );
    }

    #[test]
    fn fetch_with_literal_body_flags_and_unknown_items() {
        let r = parse_bytes(
            b"* 12 FETCH (UID 34 MODSEQ (5) FLAGS (\\Seen $Junk) BODY[HEADER.FIELDS (FROM)] {2}\r\nab RFC822.SIZE 5 BODY[] {5}\r\nhe)lo)\r\n",
        );
        assert_eq!(
            r,
            Response::Fetch {
                seq: 12,
                data: FetchData {
                    uid: Some(34),
                    flags: Some(vec!["\\Seen".into(), "$Junk".into()]),
                    size: Some(5),
                    body: Some(b"he)lo".to_vec()),
                },
            }
        );
        let r = parse_bytes(b"* 1 FETCH (FLAGS (\\Deleted) UID 9)\r\n");
        let Response::Fetch { data, .. } = r else {
            panic!()
        };
        assert_eq!(data.uid, Some(9));
        assert_eq!(data.body, None);
        let r = parse_bytes(b"* 1 FETCH (BODY[] \"a\\\"b\")\r\n");
        let Response::Fetch { data, .. } = r else {
            panic!()
        };
        assert_eq!(data.body.as_deref(), Some(&b"a\"b"[..]));
    }

    #[test]
    fn list_names() {
        assert_eq!(
            parse_bytes(b"* LIST (\\HasNoChildren) \".\" \"Sent Items\"\r\n"),
            Response::List("Sent Items".into())
        );
        assert_eq!(
            parse_bytes(b"* LIST () NIL INBOX\r\n"),
            Response::List("INBOX".into())
        );
        assert_eq!(
            parse_bytes(b"* LIST () \"/\" {4}\r\na\"b)\r\n"),
            Response::List("a\"b)".into())
        );
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        for bad in [
            &b"\r\n"[..],
            b"A1\r\n",
            b"A1 HELLO\r\n",
            b" OK\r\n",
            b"* 1 FETCH UID 3\r\n",
            b"* 1 FETCH (UID x)\r\n",
            b"* 1 FETCH (UID 3\r\n",
            b"* LIST (\r\n",
        ] {
            assert!(
                parse(framed(bad)).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
