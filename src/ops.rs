//! Operating a fleet: active health checks of every deployment (`health`), hot reload
//! (`reload`) and the signal sequence for draining and graceful upgrades (`signals`).

pub mod health;
pub mod reload;
pub mod signals;
