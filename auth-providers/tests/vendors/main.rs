//! Every vendor source against its emulator, over real HTTP(S) on loopback: one
//! module per vendor, one test binary for the crate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod aidbox;
mod graphnet;
mod msk;
mod santedb;
mod scrubbing;
mod smart;
