//! Rows the store's tests insert again and again: an application and a receiver with plain,
//! valid values (change a field with struct update syntax where a test needs another).
use oauthimap_store::{ApplicationFields, Endpoints, ReceiverFields};
use oauthimap_types::{
    AccountId, AfterDelivery, AppId, Cloud, Mechanism, Provider, Security, SinkKind, Trigger,
};

/// A Microsoft application in a Contoso tenant.
pub fn application_fields(name: &str) -> ApplicationFields {
    ApplicationFields {
        name: name.into(),
        active: true,
        provider: Provider::Microsoft,
        cloud: Cloud::Global,
        client_id: "11111111-2222-3333-4444-555555555555".into(),
        tenant: Some("contoso.onmicrosoft.com".into()),
        endpoints: Endpoints::default(),
        scopes: None,
        secret_expires_at: None,
        comment: String::new(),
    }
}

/// An active IDLE receiver of Exchange Online's INBOX into the built-in store.
pub fn receiver_fields(name: &str, app: AppId, account: Option<AccountId>) -> ReceiverFields {
    ReceiverFields {
        name: name.into(),
        active: true,
        application_id: app,
        account_id: account,
        host: "outlook.office365.com".into(),
        port: 993,
        security: Security::Tls,
        mechanism: Mechanism::Auto,
        folder: "INBOX".into(),
        trigger: Trigger::Idle,
        poll_interval_secs: 300,
        after_delivery: AfterDelivery::MarkSeen,
        accepted_folder: None,
        refused_folder: None,
        size_limit_bytes: 25 * 1024 * 1024,
        sink: SinkKind::Store,
        sink_target: None,
        ca_file: None,
    }
}
