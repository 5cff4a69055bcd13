//! Integration tests of the IMAP layer: real Dovecot with tokens from the fake identity provider, plus a
//! scripted server for provider behaviours Dovecot does not show (Exchange's answers).

mod common;
mod login;
mod mail;
mod script;
