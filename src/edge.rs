//! The client edge, where a request's path begins: the connection cap, and the limits a slow
//! or idle client meets before and between the requests the proxy sees. (Listeners and TLS
//! are set up in `app`; certificates are loaded with the config.)

pub mod accept;
pub mod conn;

pub use accept::EdgeApp;
pub use conn::mark;
