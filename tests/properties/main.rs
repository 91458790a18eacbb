//! Properties of everything a client or an upstream controls, checked on stable inside
//! `cargo test`: no such value makes the gateway panic or wrap, and whatever it accepts stays
//! within its rules. The `fuzz/` targets (nightly, cargo-fuzz) explore the same inputs
//! without a bound; these keep the properties checked on every CI run, in a few seconds.

mod body;
mod config;
mod route;
mod upstream;
