//! The simulated Entra ID over real HTTP: each token endpoint shape, OpenID configuration and
//! JWKS, key rotation, the outage switch, and `auth: entra` deployments.

use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};
use spillway_sim::{
    spawn, EntraConfig, Signing, SimAuth, SimConfig, SimHandle, TokenOutage, TokenVersion,
};
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;

const CHAT: &str = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21";
const IMDS: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fcognitiveservices.azure.com%2F";
const MSI: &str = "/msi/token?api-version=2019-08-01&resource=https://cognitiveservices.azure.com";
const UNAUTHORIZED: &str = "Unauthorized. Access token is missing, invalid, audience is incorrect \
                            (https://cognitiveservices.azure.com), or have expired.";

fn entra() -> SimConfig {
    SimConfig {
        name: "entra-sim".into(),
        auth: SimAuth::Entra,
        ttft: Duration::ZERO,
        tbt: Duration::ZERO,
        natural_tokens: 3,
        ..SimConfig::default()
    }
}

async fn start(cfg: SimConfig) -> SimHandle {
    spawn(cfg).await.expect("sim spawns")
}

struct Resp {
    status: u16,
    body: Value,
}

/// One request on a fresh connection; `Err` when the connection closed without an answer.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Resp, Error> {
    let (mut sender, conn) =
        http1::handshake(TokioIo::new(TcpStream::connect(addr).await?)).await?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body.to_string())))?)
        .await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Resp { status, body })
}

async fn get(sim: &SimHandle, path: &str, headers: &[(&str, &str)]) -> Resp {
    call(sim.addr(), "GET", path, headers, "")
        .await
        .expect("answered")
}

async fn post_form(sim: &SimHandle, path: &str, form: &[(&str, &str)]) -> Resp {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(':', "%3A").replace('/', "%2F")))
        .collect::<Vec<_>>()
        .join("&");
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    call(sim.addr(), "POST", path, &ct, &body)
        .await
        .expect("answered")
}

/// A chat completion with `auth` as its only credential header.
async fn chat(sim: &SimHandle, auth: (&str, &str)) -> Resp {
    let body = json!({"messages": [{"role": "user", "content": "hi"}]}).to_string();
    let headers = [auth, ("content-type", "application/json")];
    call(sim.addr(), "POST", CHAT, &headers, &body)
        .await
        .expect("answered")
}

async fn chat_bearer(sim: &SimHandle, token: &str) -> Resp {
    chat(sim, ("authorization", &format!("Bearer {token}"))).await
}

fn part(token: &str, index: usize) -> Value {
    let text = token.split('.').nth(index).expect("JWT part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).expect("base64url")).expect("JSON")
}

fn assert_unauthorized(resp: &Resp) {
    assert_eq!(resp.status, 401, "{}", resp.body);
    assert_eq!(
        resp.body,
        json!({"error": {"code": "401", "message": UNAUTHORIZED}})
    );
}

fn v2_token_path(sim: &SimHandle) -> String {
    format!("/{}/oauth2/v2.0/token", sim.issuer().config().tenant)
}

fn secret_form(cfg: &EntraConfig) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", &cfg.client_id),
        ("scope", "https://cognitiveservices.azure.com/.default"),
        ("client_secret", &cfg.client_secret),
    ]
}

#[tokio::test]
async fn imds_issues_v1_tokens_the_deployment_accepts() {
    let sim = start(entra()).await;
    let cfg = sim.issuer().config().clone();
    let missing = get(&sim, IMDS, &[]).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["error"], "invalid_request");

    let resp = get(&sim, IMDS, &[("metadata", "true")]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let b = &resp.body;
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["resource"], "https://cognitiveservices.azure.com/");
    assert_eq!(b["client_id"], cfg.client_id);
    assert_eq!(b["expires_in"], "3599");
    let expires_on: i64 = b["expires_on"].as_str().unwrap().parse().unwrap();
    let not_before: i64 = b["not_before"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires_on, not_before + 3599);
    assert!((0..=1).contains(&(sim.issuer().now() - not_before)));
    let token = b["access_token"].as_str().unwrap();
    assert_eq!(
        part(token, 0),
        json!({"typ": "JWT", "alg": "RS256", "kid": "sim-key-1"})
    );
    let claims = part(token, 1);
    assert_eq!(claims["aud"], "https://cognitiveservices.azure.com");
    assert_eq!(
        claims["iss"],
        format!("https://sts.windows.net/{}/", cfg.tenant)
    );
    assert_eq!(claims["appid"], cfg.client_id);
    assert_eq!(claims["oid"], cfg.object_id);
    assert_eq!(claims["tid"], cfg.tenant);
    assert_eq!(claims["exp"], expires_on);
    assert!(claims["iat"].is_i64() && claims["nbf"].is_i64());

    let other = format!("{IMDS}&client_id=someone-else");
    assert_eq!(get(&sim, &other, &[("metadata", "true")]).await.status, 400);
    let mine = format!("{IMDS}&client_id={}", cfg.client_id);
    assert_eq!(get(&sim, &mine, &[("metadata", "true")]).await.status, 200);

    assert_eq!(chat_bearer(&sim, token).await.status, 200);
    let stats = sim.issuer().stats();
    assert_eq!((stats.imds, stats.rejected), (2, 2));
    // The token service is not the deployment: only the chat request was recorded.
    assert_eq!(sim.stats().requests, 1);
}

#[tokio::test]
async fn app_service_needs_its_identity_header() {
    let sim = start(entra()).await;
    let secret = sim.issuer().config().identity_header.clone();
    assert_eq!(get(&sim, MSI, &[]).await.status, 401);
    assert_eq!(
        get(&sim, MSI, &[("x-identity-header", "wrong")])
            .await
            .status,
        401
    );
    let header = [("x-identity-header", secret.as_str())];
    let wrong_resource = get(
        &sim,
        "/msi/token?api-version=2019-08-01&resource=https://management.azure.com/",
        &header,
    )
    .await;
    assert_eq!(wrong_resource.status, 400);
    assert_eq!(wrong_resource.body["error"], "invalid_resource");
    assert!(wrong_resource.body["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS500011: "));
    let no_version = get(
        &sim,
        "/msi/token?resource=https://cognitiveservices.azure.com",
        &header,
    );
    assert_eq!(no_version.await.status, 400);

    let resp = get(&sim, MSI, &header).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["resource"], "https://cognitiveservices.azure.com");
    assert!(resp.body["expires_on"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .is_ok());
    let token = resp.body["access_token"].as_str().unwrap();
    assert_eq!(chat_bearer(&sim, token).await.status, 200);
    let stats = sim.issuer().stats();
    assert_eq!((stats.app_service, stats.imds, stats.rejected), (1, 0, 4));
}

#[tokio::test]
async fn v2_client_credentials_by_secret_or_federated_assertion() {
    let sim = start(entra()).await;
    let cfg = sim.issuer().config().clone();
    let path = v2_token_path(&sim);

    let resp = post_form(&sim, &path, &secret_form(&cfg)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["token_type"], "Bearer");
    assert_eq!(resp.body["expires_in"], 3599);
    assert_eq!(resp.body["ext_expires_in"], 3599);
    let token = resp.body["access_token"].as_str().unwrap();
    let claims = part(token, 1);
    assert_eq!(
        claims["iss"],
        format!("https://login.microsoftonline.com/{}/v2.0", cfg.tenant)
    );
    assert_eq!(claims["azp"], cfg.client_id);
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(chat_bearer(&sim, token).await.status, 200);

    let federated = [
        ("grant_type", "client_credentials"),
        ("client_id", cfg.client_id.as_str()),
        ("scope", "https://cognitiveservices.azure.com/.default"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", cfg.federated_assertion.as_str()),
    ];
    let resp = post_form(&sim, &path, &federated).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let token = resp.body["access_token"].as_str().unwrap();
    assert_eq!(chat_bearer(&sim, token).await.status, 200);

    let mut bad_assertion = federated.to_vec();
    bad_assertion[4].1 = "a-token-from-another-cluster";
    let resp = post_form(&sim, &path, &bad_assertion).await;
    assert_eq!(
        (resp.status, &resp.body["error"]),
        (401, &json!("invalid_client"))
    );
    assert!(resp.body["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS"));

    let mut bad_secret = secret_form(&cfg);
    bad_secret[3].1 = "guess";
    let resp = post_form(&sim, &path, &bad_secret).await;
    assert_eq!(
        (resp.status, &resp.body["error"]),
        (401, &json!("invalid_client"))
    );
    let description = resp.body["error_description"].as_str().unwrap();
    assert!(description.starts_with("AADSTS7000215: "), "{description}");
    assert_eq!(resp.body["error_codes"], json!([7000215]));

    let mut bad_scope = secret_form(&cfg);
    bad_scope[2].1 = "https://cognitiveservices.azure.com";
    assert_eq!(post_form(&sim, &path, &bad_scope).await.status, 400);
    let no_credential = &secret_form(&cfg)[..3];
    assert_eq!(post_form(&sim, &path, no_credential).await.status, 400);
    let resp = post_form(&sim, "/other-tenant/oauth2/v2.0/token", &secret_form(&cfg)).await;
    assert_eq!(
        (resp.status, &resp.body["error"]),
        (400, &json!("invalid_tenant"))
    );

    let stats = sim.issuer().stats();
    assert_eq!((stats.client_secret, stats.client_assertion), (1, 1));
    assert_eq!(stats.rejected, 4);
}

#[tokio::test]
async fn entra_deployment_takes_no_key_and_no_spoiled_token() {
    let sim = start(entra()).await;
    let issuer = sim.issuer();
    let resp = chat(&sim, ("api-key", "any-key")).await;
    assert_eq!(resp.status, 403);
    assert_eq!(
        resp.body,
        json!({"error": {"code": "AuthenticationTypeDisabled",
                         "message": "Key based authentication is disabled for this resource."}})
    );
    assert_unauthorized(&chat(&sim, ("x-nothing", "")).await);
    assert_unauthorized(&chat(&sim, ("authorization", "Basic abc")).await);
    assert_unauthorized(&chat_bearer(&sim, "not-a-jwt").await);

    let good = issuer.claims(TokenVersion::V1);
    let spoiled = |name: &str, value: Value| {
        let mut c = good.clone();
        c[name] = value;
        c
    };
    let now = issuer.now();
    for (what, claims, signing) in [
        ("expired", spoiled("exp", json!(now - 1)), Signing::Current),
        (
            "not yet valid",
            spoiled("nbf", json!(now + 60)),
            Signing::Current,
        ),
        (
            "audience",
            spoiled("aud", json!("https://management.azure.com")),
            Signing::Current,
        ),
        (
            "issuer",
            spoiled("iss", json!("https://sts.windows.net/evil/")),
            Signing::Current,
        ),
        ("signature", good.clone(), Signing::BadSignature),
        ("kid", good.clone(), Signing::UnknownKid),
        ("alg none", good.clone(), Signing::AlgNone),
    ] {
        let token = issuer.mint(&claims, signing).unwrap();
        let resp = chat_bearer(&sim, &token).await;
        assert_eq!(resp.status, 401, "{what}");
        assert_unauthorized(&resp);
    }
    let minted = issuer.mint(&good, Signing::Current).unwrap();
    assert_eq!(chat_bearer(&sim, &minted).await.status, 200);
    // Even with a good token, a key next to it is refused.
    let body = json!({"messages": [{"role": "user", "content": "hi"}]}).to_string();
    let bearer = format!("Bearer {minted}");
    let both = [("authorization", bearer.as_str()), ("api-key", "k")];
    let resp = call(sim.addr(), "POST", CHAT, &both, &body).await.unwrap();
    assert_eq!(resp.status, 403);
}

#[tokio::test]
async fn tokens_expire_on_the_issuer_clock() {
    let sim = start(SimConfig {
        entra: EntraConfig {
            token_lifetime: Duration::from_secs(60),
            ..EntraConfig::default()
        },
        ..entra()
    })
    .await;
    let resp = get(&sim, IMDS, &[("metadata", "true")]).await;
    assert_eq!(resp.body["expires_in"], "60");
    let token = resp.body["access_token"].as_str().unwrap().to_string();
    // 58 and 2, not 59 and 1: the system clock may tick a second between issuing and checking.
    sim.issuer().advance_clock(Duration::from_secs(58));
    assert_eq!(chat_bearer(&sim, &token).await.status, 200);
    sim.issuer().advance_clock(Duration::from_secs(2));
    assert_unauthorized(&chat_bearer(&sim, &token).await);

    sim.issuer().set_token_lifetime(Duration::from_secs(5));
    let fresh = get(&sim, IMDS, &[("metadata", "true")]).await;
    assert_eq!(fresh.body["expires_in"], "5");
    let token = fresh.body["access_token"].as_str().unwrap();
    assert_eq!(chat_bearer(&sim, token).await.status, 200);
}

/// Verifies `token` with the JWKS alone, as a gateway would: proves the published `n`/`e`.
fn verify_with_jwks(jwks: &Value, token: &str) -> bool {
    let kid = part(token, 0)["kid"].clone();
    let Some(jwk) = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
    else {
        return false;
    };
    assert_eq!((&jwk["kty"], &jwk["use"]), (&json!("RSA"), &json!("sig")));
    let b64 = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    let (signed, sig) = token.rsplit_once('.').unwrap();
    RsaPublicKeyComponents {
        n: b64("n"),
        e: b64("e"),
    }
    .verify(
        &RSA_PKCS1_2048_8192_SHA256,
        signed.as_bytes(),
        &URL_SAFE_NO_PAD.decode(sig).unwrap(),
    )
    .is_ok()
}

#[tokio::test]
async fn openid_configuration_and_jwks_follow_a_rotation() {
    let sim = start(entra()).await;
    let tenant = sim.issuer().config().tenant.clone();
    let discovery = get(
        &sim,
        &format!("/{tenant}/v2.0/.well-known/openid-configuration"),
        &[],
    )
    .await;
    assert_eq!(discovery.status, 200);
    let doc = &discovery.body;
    assert_eq!(
        doc["issuer"],
        format!("https://login.microsoftonline.com/{tenant}/v2.0")
    );
    let endpoint = sim.endpoint();
    assert_eq!(
        doc["token_endpoint"],
        format!("{endpoint}/{tenant}/oauth2/v2.0/token")
    );
    let jwks_uri = doc["jwks_uri"].as_str().unwrap();
    let jwks_path = jwks_uri
        .strip_prefix(&endpoint)
        .expect("jwks_uri points back here");
    assert_eq!(
        get(&sim, "/other/discovery/v2.0/keys", &[]).await.status,
        400
    );

    let jwks = get(&sim, jwks_path, &[]).await.body;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    let old = sim
        .issuer()
        .mint(&sim.issuer().claims(TokenVersion::V2), Signing::Current)
        .unwrap();
    assert!(verify_with_jwks(&jwks, &old));

    let rotated = call(sim.addr(), "POST", "/_sim/entra/rotate", &[], "")
        .await
        .unwrap();
    assert_eq!(rotated.body["kid"], "sim-key-2");
    let jwks = get(&sim, jwks_path, &[]).await.body;
    let kids: Vec<&Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert_eq!(kids, [&json!("sim-key-1"), &json!("sim-key-2")]);
    let new = get(&sim, IMDS, &[("metadata", "true")]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(part(&new, 0)["kid"], "sim-key-2");
    assert!(verify_with_jwks(&jwks, &new) && verify_with_jwks(&jwks, &old));
    assert_eq!(chat_bearer(&sim, &old).await.status, 200);

    sim.issuer().retire_old_keys();
    let jwks = get(&sim, jwks_path, &[]).await.body;
    assert!(!verify_with_jwks(&jwks, &old) && verify_with_jwks(&jwks, &new));
    assert_unauthorized(&chat_bearer(&sim, &old).await);
    assert_eq!(chat_bearer(&sim, &new).await.status, 200);
    let stats = sim.issuer().stats();
    assert_eq!((stats.openid_fetches, stats.jwks_fetches), (1, 3));
}

#[tokio::test]
async fn token_service_goes_down_and_comes_back() {
    let sim = start(entra()).await;
    let cfg = sim.issuer().config().clone();
    let token = get(&sim, IMDS, &[("metadata", "true")]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    sim.issuer().set_outage(TokenOutage::Status(503));
    let imds = get(&sim, IMDS, &[("metadata", "true")]).await;
    assert_eq!(
        (imds.status, &imds.body["error"]),
        (503, &json!("temporarily_unavailable"))
    );
    let header = [("x-identity-header", cfg.identity_header.as_str())];
    assert_eq!(get(&sim, MSI, &header).await.status, 503);
    assert_eq!(
        post_form(&sim, &v2_token_path(&sim), &secret_form(&cfg))
            .await
            .status,
        503
    );
    // The deployment and the JWKS stay up: tokens already held keep working.
    assert_eq!(chat_bearer(&sim, &token).await.status, 200);
    let keys = format!("/{}/discovery/v2.0/keys", cfg.tenant);
    assert_eq!(get(&sim, &keys, &[]).await.status, 200);

    sim.issuer().set_outage(TokenOutage::Drop);
    let dropped = call(sim.addr(), "GET", IMDS, &[("metadata", "true")], "").await;
    assert!(dropped.is_err(), "closed without an answer");

    sim.issuer().set_outage(TokenOutage::Up);
    assert_eq!(get(&sim, IMDS, &[("metadata", "true")]).await.status, 200);
    let stats = call(sim.addr(), "GET", "/_sim/entra/stats", &[], "")
        .await
        .unwrap()
        .body;
    assert_eq!(
        (&stats["imds"], &stats["unavailable"]),
        (&json!(2), &json!(4))
    );
}

#[tokio::test]
async fn one_issuer_can_serve_several_deployments() {
    let a = start(entra()).await;
    let b = start(SimConfig {
        issuer: Some(a.issuer().clone()),
        ..entra()
    })
    .await;
    let stranger = start(entra()).await;
    stranger.issuer().rotate_key().unwrap();
    let token = get(&a, IMDS, &[("metadata", "true")]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(chat_bearer(&b, &token).await.status, 200);
    // Same tenant and kid names, different keys: a simulator never takes another's tokens.
    let foreign = stranger.issuer().mint(
        &stranger.issuer().claims(TokenVersion::V1),
        Signing::Current,
    );
    assert_unauthorized(&chat_bearer(&a, &foreign.unwrap()).await);
    assert_eq!(b.issuer().stats().imds, 1);
}

#[tokio::test]
async fn key_deployments_still_take_their_key() {
    let sim = start(SimConfig {
        api_key: Some("k".into()),
        ..SimConfig {
            auth: SimAuth::Key,
            ..entra()
        }
    })
    .await;
    assert_eq!(chat(&sim, ("api-key", "k")).await.status, 200);
    assert_eq!(chat(&sim, ("authorization", "Bearer k")).await.status, 200);
    let token = sim
        .issuer()
        .mint(&sim.issuer().claims(TokenVersion::V1), Signing::Current);
    let resp = chat_bearer(&sim, &token.unwrap()).await;
    assert_eq!(
        (resp.status, &resp.body["error"]["code"]),
        (401, &json!("401"))
    );
}
