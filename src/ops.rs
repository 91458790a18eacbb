//! Operating a fleet: active health checks of every deployment (`health`), hot reload
//! (`reload`), the signal sequence for draining and graceful upgrades (`signals`), and the
//! exchange of shared state with the rest of the fleet through Redis (`fleet`).

pub mod fleet;
pub mod health;
pub mod reload;
pub mod signals;
