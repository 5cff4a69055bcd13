//! Integration tests against the real Debian Dovecot: one test binary (links once) with a module
//! per concern. Each test starts its own private Dovecot and its own stub introspection endpoint.

mod common;
mod lifecycle;
mod mail;
mod sasl;
mod tls;
