//! The Azure OpenAI API's vocabulary: URL shapes, operations and routes, and who is asking. The ground floor:
//! governance, proxy and telemetry all speak it, and it imports nothing of the gateway.

pub mod client_addr;
pub mod route;

pub use route::{
    classify, is_alias, presented_key, Operation, Operations, Presented, Route, Shape,
};
