//! Operating a fleet: hot reload (`reload`) and the signal sequence for draining and
//! graceful upgrades (`signals`).

pub mod reload;
pub mod signals;
