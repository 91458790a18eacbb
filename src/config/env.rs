//! `${VAR}` expansion for secrets and endpoints, so keys stay out of the file.

/// Replaces every `${NAME}` with the variable's value, looked up through `lookup`.
/// Returns the names that are not set (never their values) when any is missing.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(input.len());
    let mut missing = Vec::new();
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => missing.push(name.to_string()),
                }
                rest = &after[end + 1..];
            }
            None => {
                // An unterminated `${` is kept literally: it cannot be a reference.
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

/// The process environment, as used by the config loader.
pub fn from_process(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "B" => Some("beta".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_every_reference() {
        assert_eq!(expand("${A}-${B}!", vars).unwrap(), "alpha-beta!");
        assert_eq!(expand("plain", vars).unwrap(), "plain");
        assert_eq!(expand("x${A", vars).unwrap(), "x${A");
    }

    #[test]
    fn names_all_missing_variables() {
        assert_eq!(
            expand("${NOPE} ${A} ${ALSO}", vars).unwrap_err(),
            vec!["NOPE".to_string(), "ALSO".to_string()]
        );
    }
}
