//! Microsoft Entra ID: the tokens Spillway gets for its upstreams and the tokens tenants present.

pub mod credential;
pub mod downstream;
pub mod http;
pub mod jwks;
pub mod jwt;
pub mod secret;
pub mod signing_keys;
pub mod source;
pub mod verified;

mod answer;
#[cfg(test)]
mod testing;
