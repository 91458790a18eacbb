//! Token governance: reading the request body (`body`), capping output (`caps`, `adaptive`),
//! and tenant budgets (`budget`).

pub mod adaptive;
pub mod body;
pub mod budget;
pub mod caps;
pub mod pretokenize;
pub mod prompt;
pub mod stream_options;
pub mod tokens;
