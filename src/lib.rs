//! Spillway: an edge gateway for Azure OpenAI on Pingora. Token governance, PTU-first
//! routing with spillover to Standard deployments, and replay before the client sees an error.
//!
//! The modules follow a request's path: `config` → `proxy` (admission, phases) →
//! `governance` (body, caps) → `routing` (deployment choice) → upstream. The Azure OpenAI
//! simulator the tests and the demo run against is its own crate (`crates/spillway-sim`), and
//! the `spillway` binary is `crates/spillway-cli`, so that this library carries neither.

#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod app;
pub mod config;
pub mod edge;
pub mod governance;
pub mod identity;
pub mod ops;
pub mod proxy;
pub mod routing;
pub mod shared;
pub mod stream;
pub mod telemetry;
