//! Configuration: the YAML file (`file`), its validation (`build`) and the runtime form
//! (`runtime`) that the request path reads through an `Arc`.

mod build;
mod digest;
mod env;
mod error;
pub mod file;
mod runtime;
pub mod tls;

pub use crate::identity::secret::Secret;
pub use build::Loaded;
pub use digest::KeyDigest;
pub use error::{ConfigError, Problem};
pub use runtime::*;

use std::path::Path;

/// Reads and validates a config file, expanding `${VAR}` from the process environment.
pub fn load(path: &Path, previous: Option<&Config>) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::single(path, "(file)", format!("cannot read: {e}")))?;
    build::from_yaml(&text, path, &env::from_process, previous)
}

/// Validates config text with an explicit environment, for tests and `spillway -t`.
pub fn parse(
    text: &str,
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    previous: Option<&Config>,
) -> Result<Loaded, ConfigError> {
    build::from_yaml(text, path, lookup, previous)
}

#[cfg(test)]
mod tests;
