//! Unit tests of config parsing and validation.

use super::*;
use std::path::Path;

mod classes;
mod entra;
mod fleet;
mod security;

const GOOD: &str = r#"
server:
  threads: 2
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9090
tenants:
  - name: search
    api_keys: ["${SEARCH_KEY}", "literal-key"]
pools:
  - name: ptu
    kind: provisioned
    spill_at_utilization: 85
    deployments:
      - name: eastus-ptu
        region: eastus
        endpoint: https://contoso-eastus.openai.azure.com
        deployment: gpt-4o-mini
        api_key: "${EASTUS_KEY}"
  - name: standard
    kind: standard
    deployments:
      - name: westus-std
        region: westus
        endpoint: http://127.0.0.1:8002
        deployment: gpt-4o-mini-std
        api_key: k2
models:
  gpt-4o-mini: [ptu, standard]
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "SEARCH_KEY" => Some("search-secret".into()),
        "EASTUS_KEY" => Some("eastus-secret".into()),
        _ => None,
    }
}

fn parse_str(text: &str) -> Result<Loaded, ConfigError> {
    parse(text, Path::new("test.yaml"), &env, None)
}

fn problems(text: &str) -> Vec<(String, String)> {
    match parse_str(text) {
        Ok(_) => panic!("config should be rejected"),
        Err(e) => e
            .problems
            .into_iter()
            .map(|p| (p.field, p.reason))
            .collect(),
    }
}

#[test]
fn good_config_builds() {
    let loaded = parse_str(GOOD).unwrap();
    let c = loaded.config;
    assert_eq!(loaded.server.threads, 2);
    assert_eq!(c.listen[0].addr, "127.0.0.1:8080");
    assert!(c.listen[0].tls.is_none());
    assert_eq!(
        c.tenants.authenticate("search-secret").unwrap().name,
        "search"
    );
    assert_eq!(
        c.tenants.authenticate("literal-key").unwrap().name,
        "search"
    );
    assert!(c.tenants.authenticate("nope").is_none());
    let ptu = &c.pools[0];
    assert_eq!(ptu.spill_at_utilization, 85.0);
    let d = &ptu.deployments[0];
    assert!(d.endpoint.tls);
    assert_eq!(d.endpoint.port, 443);
    assert_eq!(d.endpoint.authority, "contoso-eastus.openai.azure.com");
    let UpstreamAuth::ApiKey(key) = &d.auth else {
        panic!("an api_key deployment")
    };
    assert_eq!(key.to_str().unwrap(), "eastus-secret");
    assert!(key.is_sensitive());
    let std = &c.pools[1].deployments[0];
    assert_eq!(std.endpoint.authority, "127.0.0.1:8002");
    assert_eq!(c.pools[1].spill_at_utilization, 100.0);
    assert_eq!(c.model("gpt-4o-mini").unwrap().pools, vec![0, 1]);
    assert_eq!(c.governance.caps.sync_max_tokens, 2000);
    assert_eq!(c.retry.max_attempts, 3);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("https://contoso-eastus.openai.azure.com", "ftp://nowhere")
        .replace("${EASTUS_KEY}", "${MISSING_KEY}")
        .replace("[ptu, standard]", "[ptu, nope]")
        .replace("name: westus-std", "name: eastus-ptu")
        .replace(
            "    spill_at_utilization: 85\n",
            "    spill_at_utilization: 85\n    colour: red\n",
        );
    let p = problems(&text);
    let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
    assert!(fields.contains(&"pools[0].colour"), "{p:?}");
    assert!(
        fields.contains(&"pools[0].deployments[0].endpoint"),
        "{p:?}"
    );
    assert!(fields.contains(&"pools[0].deployments[0].api_key"), "{p:?}");
    assert!(fields.contains(&"pools[1].deployments[0].name"), "{p:?}");
    assert!(fields.contains(&"models.gpt-4o-mini[1]"), "{p:?}");
    let debug = format!("{:?}", parse_str(GOOD).unwrap());
    assert!(!debug.contains("search-secret") && !debug.contains("eastus-secret"));
    let reasons = p
        .iter()
        .map(|(_, r)| r.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(reasons.contains("MISSING_KEY"));
    assert!(reasons.contains("unknown pool `nope`"));
    assert!(reasons.contains("duplicate deployment"));
}

#[test]
fn empty_pool_and_missing_sections_are_rejected() {
    let p = problems(
        "listen: 127.0.0.1:1\ntenants: []\npools:\n  - name: a\n    kind: standard\nmodels: {}\n",
    );
    let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
    assert!(fields.contains(&"tenants"));
    assert!(fields.contains(&"pools[0].deployments"));
    assert!(fields.contains(&"models"));
}

#[test]
fn secrets_never_appear_in_errors() {
    let text = GOOD.replace("listen: 127.0.0.1:8080", "listen: not-an-address");
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(err.contains("listen[0]"), "{err}");
    assert!(!err.contains("search-secret") && !err.contains("eastus-secret"));
    let text = GOOD.replace("api_key: k2", "api_key: [k2]");
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(!err.contains("search-secret"), "{err}");
}

/// The hardening review put a key where a list belongs and serde_yaml quoted it back in the
/// error (and so in `-t`, `/status` and the log). Every wrongly typed secret is now cut out,
/// while the field and the expected type remain.
#[test]
fn wrongly_typed_secrets_are_not_echoed() {
    for (from, to) in [
        (
            r#"api_keys: ["${SEARCH_KEY}", "literal-key"]"#,
            r#"api_keys: "demo-key-LEAK1""#,
        ),
        (
            r#"api_keys: ["${SEARCH_KEY}", "literal-key"]"#,
            "api_keys: {demo-key-LEAK1: 1}",
        ),
        (
            r#"api_key: "${EASTUS_KEY}""#,
            "api_key: {k: demo-key-LEAK1}",
        ),
        ("kind: provisioned", "kind: {demo-key-LEAK1: x}"),
        ("threads: 2", "threads: demo-key-LEAK1"),
        (
            "spill_at_utilization: 85",
            r#"spill_at_utilization: "demo-key-\"LEAK1""#,
        ),
    ] {
        let text = GOOD.replace(from, to);
        assert_ne!(text, GOOD, "{from}");
        let err = parse_str(&text).unwrap_err().to_string();
        assert!(!err.contains("LEAK1"), "{to}: {err}");
        assert!(
            err.contains("line ") || err.contains("server"),
            "{to}: {err}"
        );
    }
    let err = parse_str(&GOOD.replace(
        r#"api_keys: ["${SEARCH_KEY}", "literal-key"]"#,
        r#"api_keys: "demo-key-LEAK1""#,
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("tenants[0].api_keys") && err.contains("expected a sequence"),
        "{err}"
    );
}

#[test]
fn redaction_keeps_everything_but_the_values() {
    use super::error::redact_values;
    assert_eq!(
        redact_values(r#"a: invalid type: string "k\"ey", expected u32 at line 3"#),
        "a: invalid type: string (value not shown), expected u32 at line 3"
    );
    assert_eq!(
        redact_values("invalid type: character 'x', expected a map"),
        "invalid type: character (value not shown), expected a map"
    );
    assert_eq!(
        redact_values("unknown variant `spot`, expected one of"),
        "unknown variant `spot`, expected one of"
    );
    assert_eq!(
        redact_values(r#"string "unterminated"#),
        "string (value not shown)"
    );
}

#[test]
fn bad_values_are_named() {
    let text = GOOD.replace("kind: standard", "kind: spot");
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(err.contains("kind") && err.contains("spot"), "{err}");
    let text = format!("{GOOD}retry:\n  on_status: [200]\n  max_attempts: 0\n");
    let p = problems(&text);
    assert!(p.iter().any(|(f, _)| f == "retry.on_status[0]"));
    assert!(p.iter().any(|(f, _)| f == "retry.max_attempts"));
    let text = GOOD.replace("http://127.0.0.1:8002", "http://127.0.0.1:8002/openai");
    assert!(problems(&text)
        .iter()
        .any(|(f, r)| f.ends_with("endpoint") && r.contains("without a path")));
}

#[test]
fn keys_and_regions_must_be_header_values() {
    // A key pasted with a stray control character would otherwise fail every request.
    let text = GOOD
        .replace("api_key: k2", "api_key: \"k2\\u0007secret-tail\"")
        .replace("region: westus", "region: \"west\\nus\"");
    let p = problems(&text);
    let key = p
        .iter()
        .find(|(f, _)| f == "pools[1].deployments[0].api_key")
        .expect("the key is named");
    assert!(key.1.contains("header value") && !key.1.contains("secret-tail"));
    assert!(p.iter().any(|(f, _)| f == "pools[1].deployments[0].region"));
}

#[test]
fn wire_values_are_built_once_and_the_key_is_sensitive() {
    let loaded = parse_str(GOOD).unwrap();
    let d = &loaded.config.pools[0].deployments[0];
    assert_eq!(d.wire.host, "contoso-eastus.openai.azure.com");
    assert_eq!(d.wire.name, "eastus-ptu");
    assert_eq!(d.wire.region, "eastus");
    let UpstreamAuth::ApiKey(key) = &d.auth else {
        panic!("an api_key deployment")
    };
    assert_eq!(key, "eastus-secret");
    assert!(key.is_sensitive());
    assert!(!format!("{d:?}").contains("eastus-secret"));
}

#[test]
fn live_state_survives_a_reload_only_for_the_same_upstream() {
    let first = parse_str(GOOD).unwrap().config;
    let _busy = first.pools[0].deployments[0].state.enter();
    let second = parse(GOOD, Path::new("t"), &env, Some(&first))
        .unwrap()
        .config;
    assert!(std::sync::Arc::ptr_eq(
        &first.pools[0].deployments[0].state,
        &second.pools[0].deployments[0].state
    ));
    let moved = GOOD.replace("http://127.0.0.1:8002", "http://127.0.0.1:8003");
    let third = parse(&moved, Path::new("t"), &env, Some(&second))
        .unwrap()
        .config;
    assert!(!std::sync::Arc::ptr_eq(
        &second.pools[1].deployments[0].state,
        &third.pools[1].deployments[0].state
    ));
}

#[test]
fn a_model_may_narrow_its_operations_to_known_ones() {
    let loaded = parse_str(&GOOD.replace(
        "gpt-4o-mini: [ptu, standard]",
        "gpt-4o-mini: {pools: [ptu], operations: [embeddings, chat.completions]}",
    ))
    .unwrap();
    let ops = loaded.config.model("gpt-4o-mini").unwrap().operations;
    assert!(ops.contains(crate::api::Operation::Embeddings));
    assert!(ops.contains(crate::api::Operation::ChatCompletions));
    assert!(!ops.contains(crate::api::Operation::Responses));
    let p = problems(&GOOD.replace(
        "gpt-4o-mini: [ptu, standard]",
        "gpt-4o-mini: {pools: [ptu], operations: [files]}\n  other: {pools: [ptu], operations: []}\n  ..: [ptu]",
    ));
    assert!(
        p.iter()
            .any(|(f, r)| f == "models.gpt-4o-mini.operations[0]"
                && r.contains("unknown operation `files`")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|(f, _)| f == "models.other.operations"),
        "{p:?}"
    );
    assert!(p.iter().any(|(f, _)| f == "models..."), "{p:?}");
}
