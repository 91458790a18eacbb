//! The client edge against a real gateway: a trickled head, an oversized head, an idle
//! keep-alive, a trickled body and one connection too many are each cut off, counted, and
//! kept from the upstream, while normal requests on the same gateway keep being served.

mod support;

use spillway_sim::{SimHandle, SimMode};
use std::time::Duration;
use support::client::post_json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bounds a test that would otherwise hang; nothing relies on its length.
const HANG: Duration = Duration::from_secs(20);

async fn gateway(limits: &[(&str, u64)]) -> (SimHandle, Gateway) {
    let sim = sim("eastus-ptu", SimMode::Unlimited).await;
    let mut conf = Conf::new()
        .pool("ptu", "provisioned", &[("eastus-ptu", &sim)])
        .model("mini", &["ptu"]);
    for (k, v) in limits {
        conf = conf.set(&format!("clients.limits.{k}"), *v);
    }
    (sim, Gateway::start(&conf).await)
}

/// How often `limit` fired, from the admin listener's metrics.
async fn fired(gw: &Gateway, limit: &str) -> u64 {
    let text = support::client::call("GET", &gw.admin_url("/metrics"), &[], "")
        .await
        .text();
    let needle = format!("spillway_client_limits_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().unwrap())
}

async fn open_connections(gw: &Gateway) -> u64 {
    let text = support::client::call("GET", &gw.admin_url("/metrics"), &[], "")
        .await
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix("spillway_client_connections "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Reads until the gateway closes the connection; what it sent before closing.
async fn until_closed(conn: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(HANG, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the gateway closes the connection");
    got
}

fn head(extra: &str) -> String {
    format!(
        "POST {} HTTP/1.1\r\nHost: gw\r\napi-key: {TENANT_KEY}\r\ncontent-type: application/json\r\n{extra}",
        chat_path("mini")
    )
}

async fn served(gw: &Gateway) -> bool {
    post_json(&gw.url(&chat_path("mini")), TENANT_KEY, chat_body(""))
        .await
        .status
        == 200
}

#[tokio::test]
async fn a_trickled_head_is_cut_off_at_its_deadline() {
    let (sim, gw) = gateway(&[("head_timeout_ms", 300)]).await;
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(head("").as_bytes()).await.unwrap();
    let (mut rd, mut wr) = slow.into_split();
    // A header line every 50 ms: each read is quick, only the head as a whole is late.
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for i in 0..400 {
            tick.tick().await;
            if wr
                .write_all(format!("x-slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return i;
            }
        }
        400
    });
    assert!(served(&gw).await, "a normal request is served meanwhile");
    let mut rest = Vec::new();
    tokio::time::timeout(HANG, rd.read_to_end(&mut rest))
        .await
        .expect("the slow head's connection is closed")
        .ok();
    assert!(trickle.await.unwrap() < 400, "the trickle was cut off");
    assert_eq!(fired(&gw, "head_timeout").await, 1);
    assert_eq!(
        sim.requests().len(),
        1,
        "only the normal request reached Azure"
    );
}

#[tokio::test]
async fn a_head_over_the_size_limit_is_refused_and_one_under_it_served() {
    let (sim, gw) = gateway(&[("max_head_bytes", 4096)]).await;
    let big = format!("x-big: {}\r\n", "a".repeat(5000));
    for terminated in [false, true] {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        let end = if terminated {
            "content-length: 2\r\n\r\n{}"
        } else {
            ""
        };
        let _ = conn
            .write_all(format!("{}{big}{end}", head("")).as_bytes())
            .await;
        let answer = until_closed(&mut conn).await;
        assert!(
            !String::from_utf8_lossy(&answer).contains(" 200 "),
            "terminated={terminated}: refused"
        );
    }
    assert_eq!(fired(&gw, "head_too_large").await, 2);
    let fits = format!("x-fits: {}\r\n", "a".repeat(3000));
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let body = chat_body("");
    conn.write_all(
        format!(
            "{}{fits}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            head(""),
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut conn).await).to_string();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_its_request() {
    let (_sim, gw) = gateway(&[("idle_timeout_ms", 300)]).await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let body = chat_body("");
    conn.write_all(format!("{}content-length: {}\r\n\r\n{body}", head(""), body.len()).as_bytes())
        .await
        .unwrap();
    // The response arrives, then the connection idles until the gateway closes it.
    let answer = String::from_utf8_lossy(&until_closed(&mut conn).await).to_string();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(fired(&gw, "idle_timeout").await, 1);
    assert!(served(&gw).await);
}

#[tokio::test]
async fn a_trickled_body_gets_408_and_never_reaches_azure() {
    let (sim, gw) = gateway(&[("body_timeout_ms", 300)]).await;
    let conn = TcpStream::connect(gw.addr).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    wr.write_all(head("content-length: 1000\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..400 {
            tick.tick().await;
            if wr.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    assert!(served(&gw).await, "a normal request is served meanwhile");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(HANG, rd.read_to_end(&mut answer))
        .await
        .expect("the slow body's connection is answered and closed");
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"RequestTimeout\""), "{answer}");
    trickle.abort();
    assert_eq!(fired(&gw, "body_timeout").await, 1);
    assert_eq!(
        sim.requests().len(),
        1,
        "only the normal request reached Azure"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_the_slot_comes_back() {
    let (_sim, gw) = gateway(&[("max_connections", 3)]).await;
    // The test's own admin scrapes use the admin listener, which is not capped.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    wait_until("three connections counted", HANG, async || {
        open_connections(&gw).await == 3
    })
    .await;
    let status = support::client::call("GET", &gw.admin_url("/status"), &[], "")
        .await
        .json();
    assert_eq!(status["client_connections"], 3, "{status}");
    let mut extra = TcpStream::connect(gw.addr).await.unwrap();
    let _ = extra
        .write_all(head("content-length: 2\r\n\r\n{}").as_bytes())
        .await;
    assert!(
        until_closed(&mut extra).await.is_empty(),
        "closed unanswered"
    );
    assert_eq!(fired(&gw, "connection_cap").await, 1);
    held.pop();
    wait_until("the slot is given back", HANG, async || {
        open_connections(&gw).await == 2
    })
    .await;
    assert!(served(&gw).await, "a new connection fits again");
}
