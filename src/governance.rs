//! Token governance: reading the request body (`body`), capping output (`caps`, `adaptive`),
//! tenant budgets (`budget`), and the failed-authentication limit per client address
//! (`auth_failures`).

pub mod adaptive;
pub mod auth_failures;
pub mod body;
pub mod budget;
pub mod caps;
pub mod pretokenize;
pub mod prompt;
pub mod stream_options;
pub mod tokens;
