//! Microsoft Entra ID both ways, against the simulator's token service: each upstream token
//! source gets tokens and serves, tokens are refreshed before they expire, a token outage
//! spills once the cached token runs out, and tenants' tokens are validated like
//! APIM's `validate-jwt` does.

mod support;

use serde_json::{json, Value};
use spillway_sim::{
    spawn, EntraConfig, Issuer, Signing, SimAuth, SimConfig, SimHandle, TokenOutage, TokenVersion,
};
use std::time::Duration;
use support::client::{call, Answer};
use support::{chat_body, chat_path, sim, Conf, Gateway, TENANT_KEY};

/// An Azure OpenAI resource that takes only Entra ID tokens from `issuer`.
async fn entra_sim(name: &str, issuer: &Issuer) -> SimHandle {
    spawn(SimConfig {
        name: name.into(),
        region: name.split('-').next().unwrap_or(name).into(),
        deployment: "gpt-4o-mini".into(),
        auth: SimAuth::Entra,
        issuer: Some(issuer.clone()),
        ttft: Duration::from_millis(1),
        tbt: Duration::ZERO,
        natural_tokens: 20,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

fn issuer(lifetime: Duration) -> Issuer {
    Issuer::new(EntraConfig {
        token_lifetime: lifetime,
        ..EntraConfig::default()
    })
    .expect("issuer")
}

fn yaml(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).expect("test YAML")
}

/// A pool of one deployment at `sim` that authenticates with `auth` instead of a key.
fn entra_pool(
    conf: Conf,
    pool: &str,
    kind: &str,
    name: &str,
    sim: &SimHandle,
    auth: Value,
) -> Conf {
    let conf = conf.pool(pool, kind, &[(name, sim)]);
    let mut deployments = yaml(&format!(
        "[{{name: {name}, region: {name}, endpoint: '{}', deployment: gpt-4o-mini}}]",
        sim.endpoint()
    ));
    deployments[0]["auth"] = serde_yaml::to_value(auth).expect("auth as YAML");
    conf.set(&format!("pools.{pool}.deployments"), deployments)
}

fn imds(token_server: &SimHandle) -> Value {
    json!({"type": "managed_identity",
           "endpoint": format!("{}/metadata/identity/oauth2/token", token_server.endpoint())})
}

async fn chat(gw: &Gateway, alias: &str, headers: &[(&str, &str)]) -> Answer {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    call("POST", &gw.url(&chat_path(alias)), &h, chat_body("")).await
}

async fn chat_with_key(gw: &Gateway, alias: &str) -> Answer {
    chat(gw, alias, &[("api-key", TENANT_KEY)]).await
}

/// Requests the upstream answered 401: a missing, expired or foreign token.
fn unauthorized(sim: &SimHandle) -> usize {
    sim.requests().iter().filter(|r| r.status == 401).count()
}

async fn status(gw: &Gateway) -> Value {
    call("GET", &gw.admin_url("/status"), &[], "").await.json()
}

async fn metrics(gw: &Gateway) -> String {
    call("GET", &gw.admin_url("/metrics"), &[], "").await.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_upstream_token_source_gets_tokens_and_serves() {
    let iss = issuer(Duration::from_secs(3599));
    let tokens = entra_sim("tokens", &iss).await;
    let cfg = EntraConfig::default();
    let token_file = std::env::temp_dir().join(format!("spillway-fed-{}", std::process::id()));
    std::fs::write(&token_file, &cfg.federated_assertion).unwrap();
    let sources = [
        ("imds", imds(&tokens)),
        (
            "appsvc",
            json!({"type": "managed_identity", "client_id": cfg.client_id,
                   "endpoint": format!("{}/msi/token", tokens.endpoint()),
                   "identity_header": cfg.identity_header}),
        ),
        (
            "workload",
            json!({"type": "workload_identity", "tenant_id": cfg.tenant, "client_id": cfg.client_id,
                   "token_file": token_file.display().to_string(), "authority_host": tokens.endpoint()}),
        ),
        (
            "secret",
            json!({"type": "client_secret", "tenant_id": cfg.tenant, "client_id": cfg.client_id,
                   "client_secret": cfg.client_secret, "authority_host": format!("{}/", tokens.endpoint())}),
        ),
    ];
    let mut conf = Conf::new();
    let mut sims = Vec::new();
    for (name, auth) in sources {
        let sim = entra_sim(&format!("{name}-aoai"), &iss).await;
        conf = entra_pool(conf, name, "standard", &format!("{name}-aoai"), &sim, auth)
            .model(name, &[name]);
        sims.push(sim);
    }
    let gw = Gateway::start(&conf).await;
    gw.wait_readyz().await;
    for name in ["imds", "appsvc", "workload", "secret"] {
        let a = chat_with_key(&gw, name).await;
        assert_eq!(a.status, 200, "{name}: {}", a.text());
        assert_eq!(
            a.header("x-ms-deployment-name"),
            Some(format!("{name}-aoai").as_str())
        );
    }
    let stats = iss.stats();
    assert_eq!(
        (
            stats.imds,
            stats.app_service,
            stats.client_assertion,
            stats.client_secret
        ),
        (1, 1, 1, 1),
        "one token per credential, however many requests: {stats:?}"
    );
    // Nothing of a token or a secret reaches /status or /metrics.
    let (status, metrics) = (status(&gw).await.to_string(), metrics(&gw).await);
    for text in [&status, &metrics] {
        assert!(!text.contains(&cfg.client_secret) && !text.contains(&cfg.identity_header));
        assert!(!text.contains("eyJ"), "a token leaked: {text}");
    }
    assert!(
        metrics.contains("spillway_upstream_credential_usable{credential=\"managed_identity\"} 1")
    );
    let _ = std::fs::remove_file(token_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_with_the_same_identity_share_one_token() {
    let iss = issuer(Duration::from_secs(3599));
    let (a, b) = (
        entra_sim("a-aoai", &iss).await,
        entra_sim("b-aoai", &iss).await,
    );
    let conf = entra_pool(Conf::new(), "p", "standard", "a-aoai", &a, imds(&a));
    let mut second = yaml(&format!(
        "{{name: b-aoai, region: b, endpoint: '{}', deployment: gpt-4o-mini}}",
        b.endpoint()
    ));
    second["auth"] = serde_yaml::to_value(imds(&a)).unwrap();
    let mut both = yaml("[]");
    let first = serde_yaml::from_str::<serde_yaml::Value>(&conf.yaml()).unwrap()["pools"][0]
        ["deployments"][0]
        .clone();
    both.as_sequence_mut().unwrap().extend([first, second]);
    let conf = conf.set("pools.p.deployments", both).model("m", &["p"]);
    let gw = Gateway::start(&conf).await;
    gw.wait_readyz().await;
    for _ in 0..6 {
        assert_eq!(chat_with_key(&gw, "m").await.status, 200);
    }
    assert!(a.stats().requests > 0 && b.stats().requests > 0);
    assert_eq!(iss.stats().imds, 1, "one cache for both deployments");
    assert_eq!(
        status(&gw).await["credentials"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_mid_run_is_refreshed_before_any_request_sees_a_401() {
    // Four-second tokens: refreshed every 1.5 s, so a few seconds of traffic spans several,
    // and a request always carries one with over a second left.
    let iss = issuer(Duration::from_secs(4));
    let aoai = entra_sim("ptu-aoai", &iss).await;
    let conf = entra_pool(
        Conf::new(),
        "ptu",
        "provisioned",
        "ptu-aoai",
        &aoai,
        imds(&aoai),
    )
    .model("m", &["ptu"]);
    let gw = Gateway::start(&conf).await;
    gw.wait_readyz().await;
    let mut served = 0;
    while iss.stats().imds < 4 {
        let a = chat_with_key(&gw, "m").await;
        assert_eq!(a.status, 200, "after {served} served: {}", a.text());
        served += 1;
    }
    assert!(served > 0);
    assert_eq!(
        unauthorized(&aoai),
        0,
        "the upstream never saw an expired token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_outage_serves_on_the_cached_token_then_spills_with_no_client_failure() {
    // Ten-second tokens: the last requests on the cached token reach the upstream up to 0.9 s
    // before it expires (a tenth of what is left), slack for a loaded CI machine; with 3 s
    // tokens (0.2 s) one such request once arrived late and was refused.
    let iss = issuer(Duration::from_secs(10));
    let ptu = entra_sim("ptu-aoai", &iss).await;
    let standard = sim("std-west", spillway_sim::SimMode::Unlimited).await;
    let conf = entra_pool(
        Conf::new(),
        "ptu",
        "provisioned",
        "ptu-aoai",
        &ptu,
        imds(&ptu),
    )
    .pool("std", "standard", &[("std-west", &standard)])
    .model("m", &["ptu", "std"]);
    let gw = Gateway::start(&conf).await;
    gw.wait_readyz().await;
    assert_eq!(
        chat_with_key(&gw, "m").await.header("x-ms-deployment-name"),
        Some("ptu-aoai")
    );

    iss.set_outage(TokenOutage::Status(503));
    let (mut on_ptu, mut on_std) = (0, 0);
    while on_std < 3 {
        let a = chat_with_key(&gw, "m").await;
        assert_eq!(a.status, 200, "no client-visible failure: {}", a.text());
        match a.header("x-ms-deployment-name") {
            Some("ptu-aoai") => {
                assert_eq!(
                    on_std, 0,
                    "once spilled, the PTU stays passed over until a token"
                );
                on_ptu += 1;
            }
            _ => on_std += 1,
        }
    }
    assert!(on_ptu > 0, "the cached token served during the outage");
    let st = status(&gw).await;
    let cred = &st["credentials"][0];
    assert_eq!(cred["usable"], false, "{st}");
    assert!(cred["reason"].as_str().unwrap().contains("503"), "{cred}");
    assert!(metrics(&gw)
        .await
        .contains("spillway_upstream_credential_usable{credential=\"managed_identity\"} 0"));
    assert_eq!(unauthorized(&ptu), 0);

    iss.set_outage(TokenOutage::Up);
    support::wait_until(
        "the PTU to serve again",
        Duration::from_secs(60),
        async || chat_with_key(&gw, "m").await.header("x-ms-deployment-name") == Some("ptu-aoai"),
    )
    .await;
}

/// A gateway whose tenant `entra-team` is the simulator's workload identity, by object id.
async fn token_gateway(iss: &Issuer, upstream: &SimHandle) -> Gateway {
    let conf = Conf::new()
        .token_tenant("entra-team", &[&EntraConfig::default().object_id])
        .set(
            "entra_id",
            yaml(&format!(
                "{{openid_config: '{}/{}/v2.0/.well-known/openid-configuration', \
                 issuers: ['{}', '{}'], min_refetch_seconds: 0}}",
                upstream.endpoint(),
                EntraConfig::default().tenant,
                iss.issuer_v1(),
                iss.issuer_v2()
            )),
        )
        .pool("std", "standard", &[("std-east", upstream)])
        .model("m", &["std"]);
    let gw = Gateway::start(&conf).await;
    gw.wait_readyz().await;
    gw
}

async fn with_token(gw: &Gateway, token: &str) -> Answer {
    chat(gw, "m", &[("authorization", &format!("Bearer {token}"))]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_tokens_are_validated_and_attributed() {
    let upstream = sim("std-east", spillway_sim::SimMode::Unlimited).await;
    let iss = upstream.issuer().clone();
    let gw = token_gateway(&iss, &upstream).await;

    for version in [TokenVersion::V1, TokenVersion::V2] {
        let good = iss.mint(&iss.claims(version), Signing::Current).unwrap();
        let a = with_token(&gw, &good).await;
        assert_eq!(a.status, 200, "{version:?}: {}", a.text());
        // Served again from the validated cache, still the tenant's.
        assert_eq!(with_token(&gw, &good).await.status, 200);
    }
    assert!(metrics(&gw).await.contains("tenant=\"entra-team\""));
    // The tenant's token never travels upstream: the gateway sends the deployment's key.
    assert!(upstream
        .requests()
        .iter()
        .all(|r| r.header("authorization").is_none()));

    let now = iss.now();
    let spoil = |f: &dyn Fn(&mut Value)| {
        let mut c = iss.claims(TokenVersion::V1);
        f(&mut c);
        c
    };
    let cases = [
        (
            "expired",
            spoil(&|c| c["exp"] = json!(now - 3600)),
            Signing::Current,
        ),
        (
            "wrong audience",
            spoil(&|c| c["aud"] = json!("api://other")),
            Signing::Current,
        ),
        (
            "wrong issuer",
            spoil(&|c| c["iss"] = json!("https://sts.windows.net/other/")),
            Signing::Current,
        ),
        (
            "unknown object",
            spoil(&|c| c["oid"] = json!("someone-else")),
            Signing::Current,
        ),
        (
            "bad signature",
            iss.claims(TokenVersion::V1),
            Signing::BadSignature,
        ),
        (
            "unknown key id",
            iss.claims(TokenVersion::V1),
            Signing::UnknownKid,
        ),
        ("alg none", iss.claims(TokenVersion::V1), Signing::AlgNone),
    ];
    for (what, claims, signing) in cases {
        let token = iss.mint(&claims, signing).unwrap();
        let a = with_token(&gw, &token).await;
        assert_eq!(a.status, 401, "{what}: {}", a.text());
        assert_eq!(
            a.json()["error"]["code"],
            "401",
            "{what}: Azure-shaped: {}",
            a.text()
        );
        assert!(
            !a.text().contains(&token[..20]),
            "{what}: the token is not echoed"
        );
    }
    let m = metrics(&gw).await;
    for reason in [
        "expired",
        "audience",
        "issuer",
        "no_tenant",
        "signature",
        "unknown_key",
        "algorithm",
    ] {
        assert!(
            m.contains(&format!(
                "spillway_tenant_token_refusals_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_at_the_jwks_is_picked_up() {
    let upstream = sim("std-east", spillway_sim::SimMode::Unlimited).await;
    let iss = upstream.issuer().clone();
    let gw = token_gateway(&iss, &upstream).await;
    let before = iss
        .mint(&iss.claims(TokenVersion::V1), Signing::Current)
        .unwrap();
    assert_eq!(with_token(&gw, &before).await.status, 200);

    let new_kid = iss.rotate_key().unwrap();
    let after = iss
        .mint(&iss.claims(TokenVersion::V1), Signing::Current)
        .unwrap();
    assert_eq!(
        with_token(&gw, &after).await.status,
        200,
        "signed by {new_kid}"
    );
    let keys = status(&gw).await["signing_keys"]["key_ids"].to_string();
    assert!(keys.contains(&new_kid), "{keys}");

    // A retired key's tokens stop working once the gateway fetches the keys again: a token
    // naming a key nobody published makes it fetch them...
    iss.retire_old_keys();
    let unknown = iss
        .mint(&iss.claims(TokenVersion::V1), Signing::UnknownKid)
        .unwrap();
    assert_eq!(with_token(&gw, &unknown).await.status, 401);
    // ...and the token validated before, under the retired key, is refused from then on.
    assert_eq!(with_token(&gw, &before).await.status, 401);
    assert_eq!(with_token(&gw, &after).await.status, 200);
}
