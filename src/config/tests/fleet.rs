//! The `fleet` section: defaults, validation, and a password that never shows.

use super::*;
use std::time::Duration;

fn with_fleet(section: &str) -> String {
    format!("{GOOD}\nfleet:\n{section}")
}

#[test]
fn a_fleet_gets_its_defaults_and_hides_its_password() {
    let c = parse(
        &with_fleet("  redis_url: \"rediss://:${REDIS_PASSWORD}@cache.redis.cache.windows.net:6380\"\n  expected_members: 3\n"),
        Path::new("test.yaml"),
        &|v| match v {
            "REDIS_PASSWORD" => Some("s3cret-pw".to_string()),
            v => env(v),
        },
        None,
    )
    .unwrap()
    .config;
    let f = c.fleet.expect("a fleet");
    assert_eq!(f.key_prefix, "spillway");
    assert_eq!(f.sync_interval, Duration::from_millis(100));
    assert_eq!(f.member_timeout, Duration::from_millis(500));
    assert_eq!(f.timeout, Duration::from_millis(100));
    assert_eq!(f.expected_members, 3);
    assert!(f.instance_id.ends_with(&format!("-{}", std::process::id())));
    assert_eq!(
        f.redis_display(),
        "rediss://cache.redis.cache.windows.net:6380"
    );
    assert!(!format!("{f:?}").contains("s3cret-pw"));
    // Budgets of a new fleet member start at a third until the fleet says more.
    assert_eq!(c.tenants.all()[0].budget.share(), 3);
    assert!(parse_str(GOOD).unwrap().config.fleet.is_none());
}

#[test]
fn bad_fleet_settings_are_named_without_quoting_the_url() {
    let found = problems(&with_fleet(
        "  redis_url: \"http://user:hunter2-pw@cache:6379\"\n  key_prefix: \"a{b}\"\n  sync_interval_ms: 5\n  member_timeout_ms: 5\n  expected_members: 0\n  timeout_ms: 0\n",
    ));
    let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
    for field in [
        "fleet.redis_url",
        "fleet.key_prefix",
        "fleet.sync_interval_ms",
        "fleet.member_timeout_ms",
        "fleet.expected_members",
        "fleet.timeout_ms",
    ] {
        assert!(fields.contains(&field), "{field} in {found:?}");
    }
    assert!(!format!("{found:?}").contains("hunter2"));
    let found = problems(&with_fleet("  redis_url: \"${NOT_SET}\"\n"));
    assert_eq!(found[0].0, "fleet.redis_url");
    assert!(found[0].1.contains("NOT_SET"));
    let found = problems(&with_fleet(
        "  redis_url: redis://x:6379\n  redis_host: x\n",
    ));
    assert_eq!(found.len(), 1, "{found:?}");
}
