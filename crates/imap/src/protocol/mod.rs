//! The IMAP wire format we own: framing of server responses (lines and literals, within limits)
//! and parsing them into the few shapes the session needs. Pure code with no I/O, so it is
//! unit-tested, property-tested and fuzzed (`fuzz/fuzz_targets/parse_response.rs`).

mod frame;
mod parse;

pub use frame::{Frame, FrameLimits, RawResponse, Segment, frame};
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
    let mut pos = 0;
    while pos < bytes.len() {
        match frame(&bytes[pos..], limits) {
            Ok(Frame::Complete(raw, used)) => {
                out.push(parse(raw));
                pos += used;
            }
            Ok(Frame::Need(_)) => break,
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
        fn split_points_do_not_matter(cut in 0usize..60) {
            let wire = b"* 1 FETCH (UID 7 BODY[] {5}\r\nab\r\nc)\r\nA1 OK done\r\n";
            let cut = cut.min(wire.len());
            // Framing a prefix either completes the same first response or asks for more.
            match frame(&wire[..cut], FrameLimits::default()).unwrap() {
                Frame::Need(n) => prop_assert!(n > cut),
                Frame::Complete(raw, used) => {
                    prop_assert_eq!(used, 37);
                    prop_assert_eq!(raw.literal_bytes(), 5);
                }
            }
        }
    }
}
