//! The deploy files stay consistent with the binary: the Kubernetes YAML parses, its config
//! passes `spillway -t`, the probes and grace periods line up, the replicas form one fleet,
//! and the Grafana dashboard only queries metrics the gateway exports.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_docs(path: &Path) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde_yaml::Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

fn k8s_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn kubernetes_manifests_parse_and_line_up() {
    let files = k8s_files();
    assert!(files.len() >= 6, "{files:?}");
    let mut kinds = Vec::new();
    for f in &files {
        for doc in yaml_docs(f) {
            if let Some(kind) = doc["kind"].as_str() {
                kinds.push(kind.to_string());
            }
        }
    }
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Secret",
        "Kustomization",
        "NetworkPolicy",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    let deployment = yaml_docs(&root().join("deploy/k8s/deployment.yaml")).remove(0);
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(c["lifecycle"]["preStop"].is_mapping());
    let config = yaml_docs(&root().join("deploy/k8s/config/spillway.yaml")).remove(0);
    let grace = config["server"]["grace_period_seconds"].as_u64().unwrap();
    let drain_s = config["drain_delay_ms"].as_u64().unwrap() / 1000;
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        termination > grace + drain_s,
        "Kubernetes would kill streams before Spillway drains them"
    );
}

/// The client port is open to all, the admin port only to the monitoring namespace's
/// Prometheus, and both name ports the Deployment declares. Egress reaches DNS, Azure OpenAI
/// and the fleet's Redis over TLS.
#[test]
fn the_network_policy_keeps_the_admin_port_private() {
    let policy = yaml_docs(&root().join("deploy/k8s/networkpolicy.yaml")).remove(0);
    let spec = &policy["spec"];
    assert_eq!(spec["podSelector"]["matchLabels"]["app"], "spillway");
    assert_eq!(spec["policyTypes"][0], "Ingress");
    let rules = spec["ingress"].as_sequence().unwrap();
    assert_eq!(rules.len(), 2, "{rules:?}");
    let port = |r: &serde_yaml::Value| r["ports"][0]["port"].as_str().unwrap().to_string();
    let client = rules.iter().find(|r| port(r) == "http").unwrap();
    assert!(client["from"].is_null(), "the client port is open to all");
    let admin = rules.iter().find(|r| port(r) == "admin").unwrap();
    let from = &admin["from"][0];
    assert_eq!(
        from["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert!(from["podSelector"]["matchLabels"].is_mapping());
    let deployment = yaml_docs(&root().join("deploy/k8s/deployment.yaml")).remove(0);
    let ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
    let names: Vec<_> = ports
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["http", "admin"]);
    // Egress: DNS, the Azure OpenAI endpoints, and Redis on its TLS port only.
    assert_eq!(spec["policyTypes"][1], "Egress");
    let egress: Vec<u64> = spec["egress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_sequence().unwrap())
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    for port in [53, 443, 6380] {
        assert!(egress.contains(&port), "no egress to {port}: {egress:?}");
    }
    assert!(!egress.contains(&6379), "Redis without TLS: {egress:?}");
    let kustomization =
        std::fs::read_to_string(root().join("deploy/k8s/kustomization.yaml")).unwrap();
    assert!(kustomization.contains("- networkpolicy.yaml"));
    let config = yaml_docs(&root().join("deploy/k8s/config/spillway.yaml")).remove(0);
    assert!(
        config["admin_token"].is_string(),
        "a reachable admin port needs a token"
    );
}

/// The replicas form one fleet: the config reads the Redis URL from the Secret the pods
/// load, names no instance (each pod's host name is its own), and expects as many members as
/// the Deployment runs.
#[test]
fn the_kubernetes_replicas_share_one_fleet() {
    let config = yaml_docs(&root().join("deploy/k8s/config/spillway.yaml")).remove(0);
    let fleet = &config["fleet"];
    assert_eq!(fleet["redis_url"], "${REDIS_URL}");
    assert!(
        fleet["instance_id"].is_null(),
        "a fixed instance_id would be every pod's"
    );
    let deployment = yaml_docs(&root().join("deploy/k8s/deployment.yaml")).remove(0);
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap();
    assert_eq!(fleet["expected_members"].as_u64(), Some(replicas));
    let hpa = yaml_docs(&root().join("deploy/k8s/hpa.yaml")).remove(0);
    assert_eq!(hpa["spec"]["minReplicas"].as_u64(), Some(replicas));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["envFrom"][0]["secretRef"]["name"],
        "spillway-keys"
    );
    let secret = yaml_docs(&root().join("deploy/k8s/secret.example.yaml")).remove(0);
    assert_eq!(secret["metadata"]["name"], "spillway-keys");
    let url = secret["stringData"]["REDIS_URL"].as_str().unwrap();
    assert!(
        url.starts_with("rediss://") && url.ends_with(".redis.cache.windows.net:6380"),
        "{url}"
    );
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/spillway-dashboard.json")).unwrap(),
    )
    .unwrap();
    // Metric families are defined in src/telemetry/ (the fleet's in fleet.rs).
    let source: String = std::fs::read_dir(root().join("src/telemetry"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut checked = 0;
    let mut ids = std::collections::HashSet::new();
    let mut placed: Vec<[u64; 4]> = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "duplicate id");
        let g = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap());
        assert!(x + w <= 24, "{} is wider than the grid", panel["title"]);
        for [x2, y2, w2, h2] in &placed {
            let apart = x + w <= *x2 || x2 + w2 <= x || y + h <= *y2 || y2 + h2 <= y;
            assert!(apart, "{} overlaps another panel", panel["title"]);
        }
        placed.push([x, y, w, h]);
        if panel["type"] == "row" {
            continue;
        }
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                let Some(name) = word.strip_prefix("spillway_") else {
                    continue;
                };
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(
                    source.contains(&format!("\"{base}\"")),
                    "dashboard uses unknown metric spillway_{name}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10);
}

#[test]
fn the_systemd_unit_validates_and_upgrades() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/spillway.service")).unwrap();
    assert!(unit.contains("ExecStartPre=/usr/local/bin/spillway -t"));
    assert!(unit.contains("-u -d -c"));
    assert!(unit.contains("kill -QUIT $MAINPID"));
}

/// The pods reach Azure OpenAI keyless: the service account names the managed identity, the
/// pods run as it with the webhook's label, and every pool of the config uses the workload
/// identity the webhook sets up (with that environment, the config validates).
#[test]
fn the_kubernetes_pods_use_workload_identity() {
    let sa = yaml_docs(&root().join("deploy/k8s/serviceaccount.yaml")).remove(0);
    assert_eq!(sa["kind"], "ServiceAccount");
    assert!(sa["metadata"]["annotations"]["azure.workload.identity/client-id"].is_string());
    let deployment = yaml_docs(&root().join("deploy/k8s/deployment.yaml")).remove(0);
    let template = &deployment["spec"]["template"];
    assert_eq!(
        template["spec"]["serviceAccountName"],
        sa["metadata"]["name"]
    );
    assert_eq!(
        template["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    let kustomization =
        std::fs::read_to_string(root().join("deploy/k8s/kustomization.yaml")).unwrap();
    assert!(kustomization.contains("- serviceaccount.yaml"));
    let path = root().join("deploy/k8s/config/spillway.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let webhook = |name: &str| match name {
        "AZURE_TENANT_ID" => Some("5e100000-0000-4000-8000-00000000e1d0".to_string()),
        "AZURE_CLIENT_ID" => Some("c1e47000-0000-4000-8000-000000000001".to_string()),
        "AZURE_FEDERATED_TOKEN_FILE" => {
            Some("/var/run/secrets/azure/tokens/azure-identity-token".into())
        }
        "AZURE_AUTHORITY_HOST" => Some("https://login.microsoftonline.com/".into()),
        "REDIS_URL" => Some("rediss://:key@fleet.redis.cache.windows.net:6380".into()),
        other => Some(format!("a-secret-value-for-{other}")),
    };
    let config = spillway::config::parse(&text, &path, &webhook, None)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(
        config.credentials.len(),
        1,
        "one workload identity, one token"
    );
    assert!(config
        .deployments()
        .all(|(_, d)| d.auth.credential().is_some()));
}
