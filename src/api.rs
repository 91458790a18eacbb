//! The Azure OpenAI API's vocabulary: URL shapes, operations and routes. The ground floor:
//! governance, proxy and telemetry all speak it, and it imports nothing of the gateway.

pub mod route;

pub use route::{
    classify, is_alias, presented_key, Operation, Operations, Presented, Route, Shape,
};
