//! The gateway's first slice end to end: both URL shapes, both auth headers, key replacement,
//! path and model rewrite, Azure-shaped 401/404, and `spillway -t` on good and bad files.

mod support;

use spillway_sim::SimMode;
use support::client::{call, post_json};
use support::*;

/// A gateway with alias `mini` served by one simulator, so a rewrite is visible.
async fn one_region() -> (spillway_sim::SimHandle, Gateway) {
    let sim = sim("eastus-ptu", SimMode::Unlimited).await;
    let conf = Conf::new()
        .pool("ptu", "provisioned", &[("eastus-ptu", &sim)])
        .model("mini", &["ptu"]);
    let gw = Gateway::start(&conf).await;
    (sim, gw)
}

#[tokio::test]
async fn dated_shape_with_api_key_is_rewritten_and_rekeyed() {
    let (sim, gw) = one_region().await;
    let a = post_json(&gw.url(&chat_path("mini")), TENANT_KEY, chat_body("")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(a.header("x-ms-deployment-name"), Some("eastus-ptu"));
    assert!(a.header("x-request-id").is_some_and(|id| id.len() >= 16));

    let seen = sim.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(
        r.path,
        "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(r.header("api-key"), Some("key-eastus-ptu"));
    assert!(r.header("authorization").is_none());
    assert!(!format!("{:?}", r.headers).contains(TENANT_KEY));
    assert_eq!(r.json().unwrap()["messages"][0]["content"], "Say hello");
}

#[tokio::test]
async fn v1_shape_with_bearer_rewrites_the_body_model() {
    let (sim, gw) = one_region().await;
    let a = call(
        "POST",
        &gw.url("/openai/v1/chat/completions"),
        &[
            ("authorization", &format!("Bearer {TENANT_KEY}")),
            ("content-type", "application/json"),
        ],
        chat_body(r#""model":"mini""#),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let r = &sim.requests()[0];
    assert_eq!(r.path, "/openai/v1/chat/completions");
    assert_eq!(r.json().unwrap()["model"], "gpt-4o-mini");
    assert_eq!(r.header("api-key"), Some("key-eastus-ptu"));
    assert!(r.header("authorization").is_none());
    assert_eq!(
        r.header("content-length")
            .map(|v| v.parse::<usize>().unwrap()),
        Some(r.body.len())
    );
}

#[tokio::test]
async fn missing_or_wrong_key_gets_azure_401_and_never_reaches_upstream() {
    let (sim, gw) = one_region().await;
    for headers in [
        vec![("content-type", "application/json")],
        vec![
            ("api-key", "bogus-key-123"),
            ("content-type", "application/json"),
        ],
        vec![
            ("authorization", "Basic dGVuYW50LWtleQ=="),
            ("content-type", "application/json"),
        ],
        // A valid key with a second, different credential: which one counts is not the
        // client's choice.
        vec![
            ("api-key", TENANT_KEY),
            ("api-key", "bogus-key-123"),
            ("content-type", "application/json"),
        ],
        vec![
            ("api-key", TENANT_KEY),
            ("authorization", "Bearer bogus-key-123"),
            ("content-type", "application/json"),
        ],
    ] {
        let a = call("POST", &gw.url(&chat_path("mini")), &headers, chat_body("")).await;
        assert_eq!(a.status, 401);
        assert_eq!(a.json()["error"]["code"], "401");
        assert!(!a.text().contains("bogus-key-123"));
    }
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn unknown_model_and_unknown_path_get_azure_404() {
    let (sim, gw) = one_region().await;
    let a = post_json(&gw.url(&chat_path("gpt-5")), TENANT_KEY, chat_body("")).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"]["code"], "DeploymentNotFound");
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt-5"));
    let a = post_json(&gw.url("/v1/chat/completions"), TENANT_KEY, chat_body("")).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"]["code"], "404");
    let a = post_json(
        &gw.url("/openai/v1/chat/completions"),
        TENANT_KEY,
        chat_body(r#""model":"nope""#),
    )
    .await;
    assert_eq!(a.status, 404);
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn embeddings_are_routed_the_same_way() {
    let (sim, gw) = one_region().await;
    let a = post_json(
        &gw.url("/openai/deployments/mini/embeddings?api-version=2024-10-21"),
        TENANT_KEY,
        r#"{"input":"hello world"}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let r = &sim.requests()[0];
    assert_eq!(
        r.path,
        "/openai/deployments/gpt-4o-mini/embeddings?api-version=2024-10-21"
    );
    assert_eq!(&r.body[..], br#"{"input":"hello world"}"#);
}

#[tokio::test]
async fn request_id_is_kept_or_generated() {
    let (sim, gw) = one_region().await;
    let a = call(
        "POST",
        &gw.url(&chat_path("mini")),
        &[("api-key", TENANT_KEY), ("x-request-id", "trace-123")],
        chat_body(""),
    )
    .await;
    assert_eq!(a.header("x-request-id"), Some("trace-123"));
    assert_eq!(sim.requests()[0].header("x-request-id"), Some("trace-123"));
}

/// The hardening review's bypasses, and more: each reached Azure with the deployment's key
/// (and most skipped the output cap). Each is now an Azure-shaped 404 and the upstream
/// receives nothing. (Backslashes, which no HTTP client here will send, are in the unit test.)
#[tokio::test]
async fn only_allowlisted_operations_reach_the_upstream() {
    let (sim, gw) = one_region().await;
    let body = chat_body(r#""max_tokens":9000"#);
    let q = "?api-version=2024-10-21";
    let cases: Vec<(&str, String)> = [
        ("POST", "/openai/v1/fine_tuning/jobs"),
        ("DELETE", "/openai/v1/files/file-abc"),
        ("GET", "/openai/v1/files"),
        ("POST", "/openai/v1/batches"),
        ("GET", "/openai/v1/chat/completions"),
        ("PUT", "/openai/deployments/mini/chat/completions"),
        ("POST", "/openai/deployments/mini/../../files"),
        ("POST", "/openai/deployments/mini/chat/completions/"),
        ("POST", "/openai/deployments/mini/./chat/completions"),
        ("POST", "/openai/deployments/mini/x/../chat/completions"),
        ("POST", "/openai/deployments/mini/chat//completions"),
        ("POST", "/openai/deployments/mini/chat%2Fcompletions"),
        ("POST", "/openai/deployments/mini/chat%5Ccompletions"),
        ("POST", "/openai/deployments/mini/Chat/Completions"),
        ("POST", "/openai/deployments/mini/chat/completions;x"),
        ("POST", "/openai/deployments/mini;x/chat/completions"),
        (
            "POST",
            "/openai/deployments/mini/extensions/chat/completions",
        ),
        ("POST", "/openai/deployments/mini/images/generations"),
        ("POST", "/openai/deployments/../chat/completions"),
        ("POST", "/openai/deployments/m%69ni/chat/completions"),
        ("POST", "/openai/v1/./chat/completions"),
        ("POST", "/openai/v1/chat/completions/"),
        ("POST", "/openai/v1/responses/resp_1"),
    ]
    .into_iter()
    .map(|(m, p)| (m, format!("{p}{q}")))
    .collect();
    for (method, path) in &cases {
        let headers = [
            ("api-key", TENANT_KEY),
            ("content-type", "application/json"),
        ];
        let a = call(method, &gw.url(path), &headers, body.clone()).await;
        assert_eq!(a.status, 404, "{method} {path}: {}", a.text());
        assert_eq!(a.json()["error"]["code"], "404", "{method} {path}");
    }
    assert!(
        sim.requests().is_empty(),
        "reached the upstream: {:?}",
        sim.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    // The exact spelling still works, and is capped.
    let a = post_json(&gw.url(&chat_path("mini")), TENANT_KEY, body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(sim.requests()[0].json().unwrap()["max_tokens"], 2000);
}

#[tokio::test]
async fn a_model_allows_only_its_listed_operations() {
    let sim = sim("eastus-ptu", SimMode::Unlimited).await;
    let conf = Conf::new()
        .pool("ptu", "provisioned", &[("eastus-ptu", &sim)])
        .model("vectors", &["ptu"])
        .set("models.vectors.operations", vec!["embeddings"]);
    let gw = Gateway::start(&conf).await;
    let a = post_json(&gw.url(&chat_path("vectors")), TENANT_KEY, chat_body("")).await;
    assert_eq!(a.status, 404, "{}", a.text());
    assert_eq!(a.json()["error"]["code"], "OperationNotSupported");
    let a = post_json(
        &gw.url("/openai/v1/chat/completions"),
        TENANT_KEY,
        chat_body(r#""model":"vectors""#),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.text());
    assert!(sim.requests().is_empty());
    let a = post_json(
        &gw.url("/openai/deployments/vectors/embeddings?api-version=2024-10-21"),
        TENANT_KEY,
        r#"{"input":"hello"}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(sim.requests().len(), 1);
}
