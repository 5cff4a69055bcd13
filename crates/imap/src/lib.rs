//! The IMAP layer of oauthimap: TLS sessions (implicit TLS or STARTTLS, OS trust store plus an
//! optional extra CA), SASL XOAUTH2 and OAUTHBEARER logins from a `TokenSource` (error
//! challenges answered as the specs say, one forced token refresh before a refusal is
//! reported), the narrow `MailSession` interface the collector uses, and a redacting protocol
//! transcript for diagnostics.
//!
//! It knows nothing of receivers, sinks or the database: callers decide what to fetch and what
//! to do afterwards. Every error is an [`ImapError`] that names the server and user and says
//! whether it is transient or permanent.
//!
//! ```no_run
//! # async fn demo(tokens: &impl oauthimap_types::TokenSource) -> Result<(), oauthimap_imap::ImapError> {
//! use oauthimap_imap::{MailSession as _, SessionConfig, UidRange, connect_and_login};
//! use oauthimap_types::Security;
//!
//! let config = SessionConfig::new("outlook.office365.com", 993, Security::Tls, "help@contoso.com");
//! let mut session = connect_and_login(&config, tokens).await?;
//! let mailbox = session.select("INBOX").await?;
//! let sizes = session.fetch_sizes(UidRange::from(1)).await?;
//! let batch: Vec<u32> = sizes.iter().take(20).map(|m| m.uid).collect();
//! for message in session.fetch_messages(&batch).await? {
//!     println!("{} {} bytes (UIDVALIDITY {})", message.uid, message.raw.len(), mailbox.uid_validity);
//! }
//! session.logout().await
//! # }
//! ```

#![forbid(unsafe_code)]
// `ImapError` is ~200 bytes and only built on cold paths after network I/O; boxing every
// variant's context would cost readability for no measurable gain.
#![allow(clippy::result_large_err)]

mod cert;
mod conn;
mod error;
mod login;
mod names;
pub mod protocol;
mod sasl;
mod session;
mod tls;
mod transcript;

pub use cert::{CertNames, cert_names};
pub use conn::{RawStream, TlsInfo};
pub use error::{ImapError, Target};
pub use login::{SessionConfig, connect_and_login};
pub use names::{UidRange, decode_mailbox_name, encode_mailbox_name, uid_set};
pub use sasl::{
    SaslErrorDetails, SaslMechanism, choose_mechanism, decode_error_challenge, escape_saslname,
    oauthbearer_initial_response, xoauth2_initial_response,
};
pub use session::{FetchedMessage, IdleOutcome, MailSession, Mailbox, MessageSize, Session};
pub use transcript::{Direction, REDACTED, Transcript, TranscriptLine};
