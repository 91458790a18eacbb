//! Spillway's benchmark tools (the binaries under `src/bin/`) and what they share. The runner
//! is `bench/run`; its report is written by `bench/report.py` into `bench/results/`.

pub mod fleet_model;
pub mod fleet_port;
pub mod floor;
pub mod policy;
