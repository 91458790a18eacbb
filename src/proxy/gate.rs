//! What runs before admission reads anything of a request: the Front Door id, and the
//! failed-authentication limit of the client's address. Both answer before the key is
//! checked and before the body is read.

use super::ctx::RequestCtx;
use super::reply::Reply;
use crate::api::client_addr::client_addr;
use crate::governance::auth_failures::Counted;
use crate::shared::Shared;
use pingora::proxy::Session;
use std::net::{IpAddr, Ipv4Addr};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

/// Refuses a request that did not come through the configured Front Door, or whose address
/// has used up its failed authentications. Notes the client's address in `ctx`.
pub fn check(shared: &Shared, session: &Session, ctx: &mut RequestCtx) -> Result<(), Reply> {
    let clients = &ctx.config.clients;
    let headers = &session.req_header().headers;
    if let Some(id) = &clients.front_door_id {
        let mut presented = headers.get_all("x-azure-fdid").iter();
        // Exactly one value, equal in constant time: the id is not meant to be public.
        let ok = match (presented.next(), presented.next()) {
            (Some(v), None) => bool::from(v.as_bytes().ct_eq(id.expose().as_bytes())),
            _ => false,
        };
        if !ok {
            shared
                .metrics
                .client_refusals
                .with_label_values(&["front_door"])
                .inc();
            return Err(Reply::not_through_front_door());
        }
    }
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let client = client_addr(peer, headers, &clients.trusted_proxies);
    ctx.client = Some(client);
    let policy = &clients.auth_failures;
    if let Some(wait) = shared.auth_failures.blocked(client, policy, Instant::now()) {
        shared
            .metrics
            .client_refusals
            .with_label_values(&["auth_limited"])
            .inc();
        return Err(Reply::too_many_auth_failures(wait));
    }
    Ok(())
}

/// Counts a refused request against its address when it failed authentication, and logs
/// once per window the address that reached the limit.
pub fn refused(shared: &Shared, ctx: &RequestCtx, reply: &Reply) {
    if !reply.is_auth_failure() {
        return;
    }
    shared
        .metrics
        .client_refusals
        .with_label_values(&["unauthorized"])
        .inc();
    if let Some(reason) = ctx.token_refused {
        shared
            .metrics
            .identity
            .token_refusals
            .with_label_values(&[reason])
            .inc();
    }
    let Some(client) = ctx.client else { return };
    let policy = &ctx.config.clients.auth_failures;
    if shared.auth_failures.failed(client, policy, Instant::now()) == Counted::ReachedLimit {
        log::warn!(
            "client {client}: {} failed authentications within {} ms; it gets 429 until the window ends",
            policy.limit,
            policy.window.as_millis()
        );
    }
}
