//! HTTP tests of the fake identity provider: every flow driven over real HTTP with reqwest.

mod binary;
mod common;
mod control;
mod device;
mod faults;
mod google;
mod introspection;
mod microsoft;
