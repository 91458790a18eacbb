//! The `spillway` binary's own command line: `-t` validates a config and lists every problem
//! with its file and field, and the deploy files' config passes it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (this crate lives in `crates/spillway-cli`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `spillway -t -c path` with extra environment variables.
fn spillway_t(path: &Path, envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["-t", "-c"])
        .arg(path)
        .envs(envs.iter().copied())
        .output()
        .expect("the spillway binary runs")
}

#[test]
fn config_test_flag_lists_every_error() {
    let dir = std::env::temp_dir().join(format!("spillway-t-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "listen: nowhere\ntenants:\n  - name: a\n    api_keys: [\"${SPILLWAY_TEST_UNSET_VAR}\"]\npools:\n  - name: ptu\n    kind: provisioned\n    deployments: []\nmodels:\n  m: [ptu, missing]\n",
    )
    .unwrap();
    let out = spillway_t(&bad, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "bad.yaml",
        "listen[0]",
        "tenants[0].api_keys[0]: environment variable SPILLWAY_TEST_UNSET_VAR is not set",
        "pools[0].deployments: pool has no deployments",
        "models.m[1]: unknown pool `missing`",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }

    let good = root().join("conf/demo.yaml");
    let out = spillway_t(&good, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn short_tenant_keys_are_warned_about_by_field_without_the_key() {
    let dir = std::env::temp_dir().join(format!("spillway-t-short-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("short.yaml");
    let text = std::fs::read_to_string(root().join("conf/demo.yaml"))
        .unwrap()
        .replace(
            r#"api_keys: ["demo-key"]"#,
            "api_keys: [demo-key-that-is-long, shortkey99]",
        );
    assert!(
        text.contains("shortkey99"),
        "conf/demo.yaml changed its tenant"
    );
    std::fs::write(&path, text).unwrap();
    let out = spillway_t(&path, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning is not an error: {err}");
    assert!(
        err.contains("warning: tenants[0].api_keys[1]: shorter than 16 characters"),
        "{err}"
    );
    assert!(!err.contains("api_keys[0]"), "{err}");
    assert!(!err.contains("shortkey99"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_kubernetes_config_passes_spillway_t() {
    let out = spillway_t(
        &root().join("deploy/k8s/config/spillway.yaml"),
        &[
            ("SEARCH_KEY", "k1"),
            ("CHAT_KEY", "k2"),
            ("ADMIN_TOKEN", "admin-token-0123456789"),
            // What the AKS workload identity webhook sets (deploy/k8s/serviceaccount.yaml).
            ("AZURE_TENANT_ID", "5e100000-0000-4000-8000-00000000e1d0"),
            ("AZURE_CLIENT_ID", "c1e47000-0000-4000-8000-000000000001"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            (
                "REDIS_URL",
                "rediss://:k6@cache.redis.cache.windows.net:6380",
            ),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
