//! Operating a fleet: active health checks of every deployment (`health`), hot reload
//! (`reload`), the signal sequence for draining and graceful upgrades (`signals`), and the
//! exchange of shared state with the rest of the fleet through Redis (`fleet`), and the
//! Entra ID tokens and signing keys kept fresh in the background (`tokens`).

pub mod fleet;
pub mod health;
pub mod reload;
pub mod signals;
pub mod tokens;
