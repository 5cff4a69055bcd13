//! The OAuth 2.0 side of oauthimap: provider profiles (endpoints, scopes, IMAP defaults per
//! provider and national cloud) and the protocol client for every grant mail needs.
//!
//! This crate never touches the database: it turns an application's settings into URLs and
//! requests, and provider answers into token sets and classified errors.

pub mod client;
pub mod errors;
pub mod identity;
pub mod profile;

pub use client::{AuthorizationStart, ClientAuth, DeviceStart, Grant, OAuthClient};
pub use errors::{OAuthError, aadsts_hint};
pub use identity::jwt_claims;
pub use profile::{
    EndpointSettings, Profile, ProfileError, check_endpoint_url, check_https_url, is_loopback,
    is_loopback_host, resolve,
};
