//! The IMAP wire format we own: framing of server responses (lines and literals, within limits)
//! and parsing them into the few shapes the session needs. Pure code with no I/O, so it is
//! unit-tested, property-tested and fuzzed (`fuzz/fuzz_targets/parse_response.rs`).

mod frame;
mod parse;

pub use frame::{FrameLimits, Framer, Progress, RawResponse, Segment};
pub use parse::{FetchData, Response, Status, StatusResponse, parse};

/// A server response that cannot be framed or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A line longer than the limit.
    #[error("a response line is longer than {0} bytes")]
    LineTooLong(usize),
    /// A literal larger than the limit.
    #[error("a literal of {0} bytes is larger than the limit")]
    LiteralTooLarge(u64),
    /// Not a response we can read.
    #[error("malformed response {0:?}")]
    Malformed(String),
}

/// Frames and parses every complete response in `bytes` (what the fuzz target runs). Stops at
/// the first incomplete one.
pub fn parse_all(bytes: &[u8], limits: FrameLimits) -> Vec<Result<Response, ProtocolError>> {
    let mut out = Vec::new();
    let mut framer = Framer::new(limits);
    let mut buf = bytes.to_vec();
    loop {
        match framer.advance(&mut buf) {
            Ok(Progress::Complete(raw)) => out.push(parse(raw)),
            Ok(Progress::Bytes | Progress::Literal(_)) => break,
            Err(err) => {
                out.push(Err(err));
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let limits = FrameLimits { max_line: 64, max_literal: 64 };
            let _ = parse_all(&bytes, limits);
        }

        #[test]
        fn fetch_bodies_round_trip(uid in 1u32.., body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut wire = format!("* 1 FETCH (UID {uid} RFC822.SIZE {} BODY[] {{{}}}\r\n", body.len(), body.len()).into_bytes();
            wire.extend_from_slice(&body);
            wire.extend_from_slice(b")\r\n");
            let parsed = parse_all(&wire, FrameLimits::default());
            prop_assert_eq!(parsed.len(), 1);
            let Ok(Response::Fetch { data, .. }) = &parsed[0] else { panic!("{parsed:?}") };
            prop_assert_eq!(data.uid, Some(uid));
            prop_assert_eq!(data.size, Some(body.len() as u64));
            prop_assert_eq!(data.body.as_deref(), Some(body.as_slice()));
        }

        #[test]
        fn split_points_do_not_matter(cuts in proptest::collection::vec(0usize..50, 0..6)) {
            let wire = b"* 1 FETCH (UID 7 BODY[] {5}\r\nab\r\nc)\r\nA1 OK done\r\n";
            let mut cuts = cuts;
            cuts.push(wire.len());
            cuts.sort_unstable();
            // Fed in pieces, the framer finds the same two responses as in one piece.
            let mut framer = Framer::new(FrameLimits::default());
            let (mut buf, mut fed, mut found) = (Vec::new(), 0, Vec::new());
            for cut in cuts {
                buf.extend_from_slice(&wire[fed..cut.max(fed)]);
                fed = cut.max(fed);
                while let Progress::Complete(raw) = framer.advance(&mut buf).unwrap() {
                    found.push(raw);
                }
            }
            prop_assert_eq!(found.len(), 2);
            prop_assert_eq!(found[0].literal_bytes(), 5);
            prop_assert_eq!(found[1].first_line(), "A1 OK done");
        }
    }
}
