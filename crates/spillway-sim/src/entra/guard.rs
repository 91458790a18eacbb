//! The check an `auth: entra` deployment makes: a Bearer token from this issuer, never a key.

use http::{header, HeaderMap};

use super::issuer::Issuer;
use crate::reject::Reject;

pub(crate) fn authorize(issuer: &Issuer, headers: &HeaderMap) -> Result<(), Reject> {
    // Checked first, so a gateway that forwards a client's key next to its own token is caught.
    if headers.contains_key("api-key") {
        return Err(Reject::key_auth_disabled());
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(Reject::token_unauthorized)?;
    issuer.accepts(token).map_err(|e| {
        log::debug!("sim: bearer token rejected: {e}");
        Reject::token_unauthorized()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entra::{EntraConfig, TokenVersion};
    use http::StatusCode;

    #[test]
    fn bearer_from_this_issuer_only() {
        let issuer = Issuer::new(EntraConfig::default()).unwrap();
        let other = Issuer::new(EntraConfig::default()).unwrap();
        other.rotate_key().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(authorize(&issuer, &h), Err(Reject::token_unauthorized()));
        let token = issuer.issue(TokenVersion::V1).unwrap().token;
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert!(authorize(&issuer, &h).is_ok());
        // Same tenant, but signed by a key this issuer never published.
        let foreign = other.issue(TokenVersion::V1).unwrap().token;
        h.insert(
            "authorization",
            format!("Bearer {foreign}").parse().unwrap(),
        );
        assert_eq!(authorize(&issuer, &h), Err(Reject::token_unauthorized()));
        h.insert("api-key", "k".parse().unwrap());
        assert_eq!(
            authorize(&issuer, &h).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn a_remembered_token_still_expires_and_loses_a_retired_key() {
        let issuer = Issuer::new(EntraConfig::default()).unwrap();
        let mut h = HeaderMap::new();
        let token = issuer.issue(TokenVersion::V1).unwrap().token;
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert!(authorize(&issuer, &h).is_ok());
        assert!(authorize(&issuer, &h).is_ok(), "remembered");
        issuer.rotate_key().unwrap();
        assert!(authorize(&issuer, &h).is_ok(), "its key is still published");
        issuer.retire_old_keys();
        assert_eq!(authorize(&issuer, &h), Err(Reject::token_unauthorized()));
        let fresh = issuer.issue(TokenVersion::V1).unwrap().token;
        h.insert("authorization", format!("Bearer {fresh}").parse().unwrap());
        assert!(authorize(&issuer, &h).is_ok());
        issuer.advance_clock(std::time::Duration::from_secs(7200));
        assert_eq!(authorize(&issuer, &h), Err(Reject::token_unauthorized()));
    }
}
