//! The official `openai` Python SDK through Spillway with `azure_ad_token_provider`: an
//! Azure OpenAI client that signs in with Entra ID works unchanged but for its endpoint.
//! Needs `python3` with the `openai` package (`pip install openai`; `.ci/run` installs it);
//! without them the test fails, it never skips.

mod support;

use spillway_sim::{EntraConfig, Signing, SimMode, TokenVersion};
use std::process::Command;
use support::{sim, Conf, Gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_signs_in_with_an_entra_id_token() {
    let python = std::env::var("SPILLWAY_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python).args(["-c", "import openai"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs {python} with the openai package: `python3 -m pip install openai` \
         (or set SPILLWAY_PYTHON): {probe:?}"
    );
    let upstream = sim("std-east", SimMode::Unlimited).await;
    let iss = upstream.issuer().clone();
    let conf = Conf::new()
        .token_tenant("sdk-team", &[&EntraConfig::default().object_id])
        .set(
            "entra_id",
            serde_yaml::from_str::<serde_yaml::Value>(&format!(
                "{{jwks_uri: '{}/{}/discovery/v2.0/keys', issuers: ['{}']}}",
                upstream.endpoint(),
                EntraConfig::default().tenant,
                iss.issuer_v1(),
            ))
            .unwrap(),
        )
        .pool("std", "standard", &[("std-east", &upstream)])
        .model("gpt-4o-mini", &["std"]);
    let gw = Gateway::start(&conf).await;
    gw.wait_readyz().await;
    let token = iss
        .mint(&iss.claims(TokenVersion::V1), Signing::Current)
        .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sdk/entra_token_provider.py"
    );
    let url = gw.url("");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("SPILLWAY_URL", url)
            .env("SPILLWAY_TOKEN", token)
            .output()
    })
    .await
    .unwrap()
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the SDK script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(seen["refused"], 401, "{seen}");
    assert!(seen["provider_calls"].as_u64() >= Some(2), "{seen}");
    let metrics = support::client::call("GET", &gw.admin_url("/metrics"), &[], "")
        .await
        .text();
    assert!(
        metrics.contains("tenant=\"sdk-team\""),
        "served as the token's tenant"
    );
}
