//! The policy-comparison harness (`policy-compare`, issue 15): the same seeded load through
//! the real gateway once per spill policy, measured at the simulators and the client.

pub mod calibration;
pub mod client;
pub mod config;
pub mod gateway;
pub mod load;
pub mod report;
pub mod run;
pub mod summary;
