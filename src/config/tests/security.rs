//! Unit tests of the config's security settings: hashed tenant keys, short-key warnings, the
//! `clients` section, the admin listener's address and token.

use super::{parse_str, GOOD};
use crate::config::runtime::{Tenant, Tenants};
use crate::config::KeyDigest;
use std::sync::Arc;

fn tenant(name: &str) -> Arc<Tenant> {
    Arc::new(Tenant {
        name: name.into(),
        class: Default::default(),
        limits: Default::default(),
        caps: Default::default(),
        budget: Default::default(),
        id: 0,
    })
}

#[test]
fn tenants_hold_digests_and_confirm_the_whole_digest() {
    let a = KeyDigest::of("alpha-key-0123456789");
    // A digest that shares `a`'s prefix but differs at the end: found by prefix, refused by
    // the full comparison; and a real key with that prefix still finds its own tenant.
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&a.prefix().to_le_bytes());
    bytes[31] = 1;
    let twin = KeyDigest::from_bytes(bytes);
    assert_eq!(twin.prefix(), a.prefix());
    let tenants = Tenants::new(vec![(tenant("a"), vec![a]), (tenant("b"), vec![twin])]);
    assert_eq!(
        tenants.authenticate("alpha-key-0123456789").unwrap().name,
        "a"
    );
    assert!(tenants.authenticate("alpha-key-012345678").is_none());
    assert!(tenants.authenticate("").is_none());
}

#[test]
fn no_tenant_key_is_kept_in_the_runtime_config() {
    let loaded = parse_str(GOOD).unwrap();
    let debug = format!("{:?}", loaded.config);
    assert!(!debug.contains("search-secret") && !debug.contains("literal-key"));
    assert!(debug.contains("search"), "tenant names stay visible");
}

#[test]
fn short_tenant_keys_are_a_warning_naming_the_field_not_the_key() {
    // `literal-key` (11 characters) is short; `search-secret` (13) too; a long one is not.
    let text = GOOD.replace(
        "\"literal-key\"",
        "\"literal-key\", \"a-long-enough-key-123\"",
    );
    let loaded = parse_str(&text).unwrap();
    let fields: Vec<_> = loaded.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        ["tenants[0].api_keys[0]", "tenants[0].api_keys[1]"],
        "{:?}",
        loaded.warnings
    );
    for w in &loaded.warnings {
        assert!(w.reason.contains("shorter than 16 characters"), "{w:?}");
        assert!(!w.reason.contains("secret") && !w.reason.contains("literal"));
    }
}

#[test]
fn clients_section_defaults_and_parses() {
    let c = parse_str(GOOD).unwrap().config.clients;
    assert!(c.front_door_id.is_none());
    assert!(c.trusted_proxies.is_empty());
    assert_eq!(c.auth_failures.limit, 20);
    assert_eq!(c.auth_failures.window, std::time::Duration::from_secs(10));
    let text = format!(
        "{GOOD}clients:\n  front_door_id: \"${{SEARCH_KEY}}\"\n  trusted_proxies: [10.0.0.0/8, 192.168.1.7, \"fd00::/8\"]\n  auth_failures: {{limit: 5, window_ms: 1000}}\n"
    );
    let loaded = parse_str(&text).unwrap();
    let c = &loaded.config.clients;
    assert_eq!(c.front_door_id.as_ref().unwrap().expose(), "search-secret");
    assert_eq!(c.trusted_proxies.len(), 3);
    assert!(c.trusted_proxies[1].contains(&"192.168.1.7".parse::<std::net::IpAddr>().unwrap()));
    assert_eq!(c.auth_failures.limit, 5);
    assert!(!format!("{:?}", loaded.config).contains("search-secret"));
}

#[test]
fn clients_problems_name_the_field_and_never_the_id() {
    let text = format!(
        "{GOOD}clients:\n  front_door_id: \"${{NO_SUCH_FDID}}\"\n  trusted_proxies: [10.0.0.0/33, nonsense]\n  auth_failures: {{window_ms: 0, max_addresses: 0}}\n"
    );
    let p = super::problems(&text);
    let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
    for f in [
        "clients.front_door_id",
        "clients.trusted_proxies[0]",
        "clients.trusted_proxies[1]",
        "clients.auth_failures.window_ms",
        "clients.auth_failures.max_addresses",
    ] {
        assert!(fields.contains(&f), "{f} missing from {p:?}");
    }
    assert!(p.iter().any(|(_, r)| r.contains("NO_SUCH_FDID is not set")));
}

#[test]
fn a_bare_admin_port_listens_on_loopback_only() {
    for (given, expected) in [
        ("9091", "127.0.0.1:9091"),
        ("\"9091\"", "127.0.0.1:9091"),
        ("\":9091\"", "127.0.0.1:9091"),
        ("0.0.0.0:9091", "0.0.0.0:9091"),
    ] {
        let text = GOOD.replace(
            "admin_listen: 127.0.0.1:9090",
            &format!("admin_listen: {given}"),
        );
        let loaded = parse_str(&text).unwrap();
        assert_eq!(
            loaded.config.admin_listen.as_deref(),
            Some(expected),
            "{given}"
        );
    }
    let text = GOOD.replace("admin_listen: 127.0.0.1:9090\n", "");
    assert_eq!(parse_str(&text).unwrap().config.admin_listen, None);
    let p = super::problems(&GOOD.replace("127.0.0.1:9090", "\"99999\""));
    assert!(p.iter().any(|(f, _)| f == "admin_listen"), "{p:?}");
}

#[test]
fn admin_token_is_a_digest_and_a_public_admin_without_one_is_warned_about() {
    let public = GOOD.replace("admin_listen: 127.0.0.1:9090", "admin_listen: 0.0.0.0:9090");
    let loaded = parse_str(&public).unwrap();
    assert!(loaded.config.admin_token.is_none());
    assert!(loaded.warnings.iter().any(|w| w.field == "admin_listen"));
    let text = format!("{public}admin_token: \"${{EASTUS_KEY}}\"\n");
    let loaded = parse_str(&text).unwrap();
    let token = loaded.config.admin_token.as_ref().unwrap();
    assert!(token.matches(&KeyDigest::of("eastus-secret")));
    assert!(!loaded.warnings.iter().any(|w| w.field == "admin_listen"));
    assert!(loaded.warnings.iter().any(|w| w.field == "admin_token"));
    let p = super::problems(&format!("{GOOD}admin_token: \"${{NO_ADMIN_TOKEN}}\"\n"));
    assert!(p
        .iter()
        .any(|(f, r)| f == "admin_token" && r.contains("NO_ADMIN_TOKEN")));
}
