//! The config loader: no text panics it, and no error it reports quotes a key, wherever
//! and however wrongly the key was written.

use proptest::prelude::*;
use spillway::config;
use std::path::Path;

/// A valid file with two key slots: a tenant's `api_keys` and a deployment's `api_key`.
const TEMPLATE: &str = "\
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9090
tenants:
  - name: search
    api_keys: TENANT_KEYS
    tokens_per_minute: 6000
pools:
  - name: ptu
    kind: provisioned
    deployments:
      - name: eastus-ptu
        endpoint: http://127.0.0.1:8001
        deployment: gpt-4o-mini
        api_key: DEPLOYMENT_KEY
models:
  gpt-4o-mini: [ptu]
routing:
  max_cooldown_ms: 60000
";

/// Ways to write a key, right and wrong: `@` is the key.
const SHAPES: &[&str] = &[
    "@",
    "\"@\"",
    "'@'",
    "[@]",
    "[\"@\", 5]",
    "[[@]]",
    "{@: 1}",
    "{k: @}",
    "{k: [@]}",
    "\"@\\u0007\"",
    "\"@\\n\"",
    "!!binary @",
    "&a @",
    "@ # comment",
    "|\n      @",
    "${KEY}",
    "\"${KEY}\"",
    "[\"${KEY}\"]",
    "{k: \"${KEY}\"}",
];

/// Junk that breaks the rest of the file in other ways, so that the key sits in a file with
/// other problems too.
const JUNK: &[&str] = &[
    "",
    "x: 1",
    "  y: [",
    "- z",
    "listen: nope",
    "retry: {max_attempts: 99}",
    "\t",
    ":",
    "'",
    "\"",
    "{",
    "]",
    "tenants: 5",
    "pools: [{name: ptu}]",
    "server: {threads: -1}",
];

fn secret() -> impl Strategy<Value = String> {
    "sk-[A-Za-z0-9]{16,32}"
}

fn shape() -> impl Strategy<Value = &'static str> {
    prop::sample::select(SHAPES)
}

fn written(shape: &str, key: &str) -> String {
    shape.replace('@', key)
}

fn parse(text: &str, key: &str) -> Result<config::Loaded, config::ConfigError> {
    let env = |name: &str| (name == "KEY").then(|| key.to_string());
    config::parse(text, Path::new("p.yaml"), &env, None)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_text_panics_the_loader(
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(prop::sample::select(JUNK), 0..8).prop_map(|l| l.join("\n")),
            (any::<prop::sample::Index>(), any::<prop::sample::Index>()).prop_map(|(a, b)| {
                // A slice of the valid file: every truncation and every missing head.
                let (a, b) = (a.index(TEMPLATE.len()), b.index(TEMPLATE.len()));
                TEMPLATE[a.min(b)..a.max(b)].to_string()
            }),
        ],
    ) {
        let _ = parse(&text, "sk-unused");
    }

    #[test]
    fn no_error_quotes_a_key(
        key in secret(),
        tenant in shape(),
        deployment in shape(),
        junk in prop::sample::select(JUNK),
        at in any::<prop::sample::Index>(),
    ) {
        let mut lines: Vec<String> = TEMPLATE
            .replace("TENANT_KEYS", &written(tenant, &key))
            .replace("DEPLOYMENT_KEY", &written(deployment, &key))
            .lines()
            .map(String::from)
            .collect();
        let at = at.index(lines.len() + 1);
        lines.insert(at, junk.to_string());
        let text = lines.join("\n");
        match parse(&text, &key) {
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(!shown.contains(&key), "{shown}\n--- from:\n{text}");
                let debug = format!("{e:?}");
                prop_assert!(!debug.contains(&key));
            }
            Ok(loaded) => {
                let debug = format!("{:?}", loaded.config);
                prop_assert!(!debug.contains(&key));
            }
        }
    }
}
