//! The schedule's arithmetic, and a credential's life against the simulated Entra ID: `now` is
//! passed in, so expiry and backoff are tested without waiting.

use super::*;
use spillway_sim::entra::SCOPE;
use spillway_sim::{spawn, SimConfig, SimHandle, TokenOutage};

const PATIENCE: Duration = Duration::from_secs(5);
const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn refresh_at_half_life_and_stop_before_expiry() {
    let t0 = Instant::now();
    assert_eq!(
        schedule(t0, S(3600)),
        (t0 + Duration::from_millis(1_799_500), t0 + S(3569))
    );
    assert_eq!(schedule(t0, S(101)), (t0 + S(50), t0 + S(90)));
    // A second-long token may be gone on arrival: refreshed at once, never used.
    assert_eq!(schedule(t0, S(1)), (t0, t0));
    assert_eq!(schedule(t0, Duration::ZERO), (t0, t0));
}

#[test]
fn backoff_doubles_to_thirty_seconds() {
    let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    assert_eq!(backoff(u32::MAX), S(30));
}

async fn sim_with_lifetime(lifetime: Duration) -> (SimHandle, Credential) {
    let sim = spawn(SimConfig::default()).await.expect("sim spawns");
    sim.issuer().set_token_lifetime(lifetime);
    let source = TokenSource::Imds {
        endpoint: format!("{}/metadata/identity/oauth2/token", sim.endpoint()),
        client_id: None,
    };
    (sim, Credential::new(source, SCOPE.into()))
}

fn bearer(value: &HeaderValue) -> &str {
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

#[tokio::test]
async fn serves_its_token_through_an_outage_until_unusable() {
    let (sim, cred) = sim_with_lifetime(S(101)).await;
    let connector = Connector::new(None);
    let t0 = Instant::now();
    assert!(cred.due() <= t0, "a new credential is due at once");
    assert!(!cred.attempted());
    assert_eq!(cred.authorization(t0), None);
    assert_eq!(cred.status(t0).reason.as_deref(), Some("no token yet"));

    assert_eq!(
        cred.refresh(&connector, PATIENCE, t0).await,
        Refreshed::BecameUsable
    );
    assert!(cred.attempted());
    assert_eq!(cred.due(), t0 + S(50));
    let first = cred.authorization(t0).expect("a token");
    assert!(first.is_sensitive());
    assert!(sim.issuer().verify(bearer(&first)).is_ok());

    sim.issuer().set_outage(TokenOutage::Status(503));
    let refreshed = cred.refresh(&connector, PATIENCE, t0 + S(50)).await;
    assert_eq!(refreshed, Refreshed::Unchanged);
    assert_eq!(cred.due(), t0 + S(51));
    let status = cred.status(t0 + S(50));
    assert!(status.usable && status.reason.is_none());
    let warning = status.last_error.unwrap_or_default();
    assert!(warning.contains("answered 503"), "{warning}");
    assert_eq!(cred.authorization(t0 + S(89)), Some(first.clone()));
    assert_eq!(cred.authorization(t0 + S(90)), None);

    sim.issuer().set_outage(TokenOutage::Drop);
    // The backoff (2 s) would pass the token's end (t0 + 90 s): try again at its end.
    assert_eq!(
        cred.refresh(&connector, PATIENCE, t0 + S(89)).await,
        Refreshed::Unchanged
    );
    assert_eq!(cred.due(), t0 + S(90));
    assert_eq!(
        cred.refresh(&connector, PATIENCE, t0 + S(90)).await,
        Refreshed::BecameUnusable
    );
    let status = cred.status(t0 + S(90));
    let reason = status.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("token endpoint: reading the response from 127.0.0.1"),
        "{reason}"
    );
    assert_eq!(
        (status.usable, status.refreshes, status.failures),
        (false, 1, 3)
    );
    assert_eq!(status.last_error, Some(reason));
    assert_eq!(status.expires_in_seconds, Some(11));
    assert_eq!(cred.due(), t0 + S(90) + S(4));

    // Back up: a new token (the issuer's clock moved, so it differs) replaces the old one.
    sim.issuer().set_outage(TokenOutage::Up);
    sim.issuer().advance_clock(S(94));
    let t1 = t0 + S(94);
    assert_eq!(
        cred.refresh(&connector, PATIENCE, t1).await,
        Refreshed::BecameUsable
    );
    let second = cred.authorization(t1).expect("a new token");
    assert_ne!(second, first);
    assert!(sim.issuer().verify(bearer(&second)).is_ok());
    let status = cred.status(t1);
    assert_eq!(
        (status.usable, status.reason, status.last_error),
        (true, None, None)
    );
    assert_eq!(status.expires_in_seconds, Some(101));
    assert_eq!(cred.due(), t1 + S(50));
}

#[tokio::test]
async fn a_first_failure_is_reported_and_retried_after_a_second() {
    let (sim, cred) = sim_with_lifetime(S(101)).await;
    sim.issuer().set_outage(TokenOutage::Status(503));
    let t0 = Instant::now();
    let refreshed = cred.refresh(&Connector::new(None), PATIENCE, t0).await;
    assert_eq!(refreshed, Refreshed::BecameUnusable);
    let reason = cred.status(t0).reason.unwrap_or_default();
    assert!(
        reason.contains("answered 503: temporarily_unavailable"),
        "{reason}"
    );
    assert!(cred.attempted());
    assert_eq!(cred.due(), t0 + S(1));
    assert_eq!(
        cred.refresh(&Connector::new(None), PATIENCE, t0 + S(1))
            .await,
        Refreshed::Unchanged
    );
    assert_eq!(cred.due(), t0 + S(3));
}

#[tokio::test]
async fn debug_and_status_never_show_the_token() {
    let (sim, cred) = sim_with_lifetime(S(101)).await;
    let t0 = Instant::now();
    cred.refresh(&Connector::new(None), PATIENCE, t0).await;
    let token = cred.authorization(t0).expect("a token");
    let token = bearer(&token).to_string();
    let status = serde_json::to_string(&cred.status(t0)).expect("serializes");
    let shown = format!("{cred:?} {status} {:?}", cred.authorization(t0));
    assert!(!shown.contains(&token[..20]), "{shown}");
    assert!(shown.contains("managed_identity"), "{shown}");
    assert_eq!(cred.label(), "managed_identity");
    assert!(cred.identity().contains(SCOPE));
    drop(sim);
}
