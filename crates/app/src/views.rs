//! The names of the rows the shells display: one vocabulary for the web UI, the REST API and the
//! CLI, owned by the core. The shells reach lower crates only through these names, item by item,
//! never a whole crate.
//!
//! Each name here is a plain-data row of the store, re-exported as is because it carries nothing
//! a shell must not see: secrets are never in a row (a row says `has_client_secret`,
//! `has_sink_secret`, `has_refresh_token`; the sealed values stay in the store), and the built-in
//! store's file location of a message is not serialized. A row that one day carries more than a
//! shell may show becomes an app-owned view struct in this module instead.

/// A started device-code sign-in: the code and address to show the user.
pub use oauthimap_oauth::DeviceStart;
/// An authorized mailbox: state, token times (never the tokens), last error.
pub use oauthimap_store::Account;
/// An API token's name, scopes and times (the token itself is shown once, at creation).
pub use oauthimap_store::ApiToken;
/// An OAuth application as stored (the client secret only as `has_client_secret`).
pub use oauthimap_store::Application;
/// One line of the event log.
pub use oauthimap_store::Event;
/// A gateway password's account, name, protocols and times (never the password or its hash).
pub use oauthimap_store::GatewayPassword;
/// One delivery ledger row.
pub use oauthimap_store::LedgerEntry;
/// A delivery ledger row's state, also a filter of `Core::ledger`.
pub use oauthimap_store::LedgerStatus;
/// A search over the built-in store's messages.
pub use oauthimap_store::MessageFilter;
/// One line of the built-in store's message list.
pub use oauthimap_store::MessageSummary;
/// A receiver with its state and the names of its application and account.
pub use oauthimap_store::Receiver;
/// A receiver's delivered, refused and failing counts.
pub use oauthimap_store::ReceiverActivity;
/// A message of the built-in store (its file location is not serialized).
pub use oauthimap_store::StoredMessage;
