//! Every problem found in a config file, reported together with the field and the reason.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem: where in the file (a field path such as `pools[0].deployments[1].endpoint`)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub reason: String,
}

/// All problems of one file. Never contains a secret value: reasons name variables and
/// fields, not what they hold.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub fn single(file: &Path, field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            problems: vec![Problem {
                field: field.into(),
                reason: reason.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.field, p.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A serde message with every string and character value it quotes replaced by `(value not
/// shown)`: serde prints what it could not use (`invalid type: string "…", expected a
/// sequence`), and in a config that value may be a key. Types, field paths and the names
/// of unknown enum variants (in backticks, never secret) stay.
pub fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let next = ["string \"", "character '"]
            .iter()
            .filter_map(|open| rest.find(open).map(|at| (at, *open)))
            .min();
        let Some((at, open)) = next else {
            out.push_str(rest);
            return out;
        };
        let kind = &open[..open.len() - 1];
        out.push_str(&rest[..at]);
        out.push_str(kind);
        out.push_str("(value not shown)");
        let quote = open.chars().last().unwrap_or('"');
        // The value is Debug-escaped: skip to the first quote that is not escaped.
        let mut chars = rest[at + open.len()..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '\\' {
                chars.next();
            } else if c == quote {
                end = Some(i);
                break;
            }
        }
        let start = at + open.len();
        rest = match end {
            Some(i) => &rest[start + i + 1..],
            None => "",
        };
    }
}

/// Collects problems while a file is converted, so that one run reports all of them, and
/// warnings: things that work but should not (`spillway -t` prints them).
#[derive(Default)]
pub struct Problems {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Problems {
    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(Problem {
            field: field.into(),
            reason: reason.into(),
        });
    }

    pub fn warn(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.warnings.push(Problem {
            field: field.into(),
            reason: reason.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn into_error(self, file: &Path) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            problems: self.errors,
        }
    }

    pub fn into_warnings(self) -> Vec<Problem> {
        self.warnings
    }
}
