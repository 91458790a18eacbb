//! A simulated Microsoft Entra ID: the token service managed identities and workload identities
//! call, the OpenID configuration and JWKS verifiers fetch, and the Bearer check of `auth: entra`
//! deployments.
//!
//! Served on the simulator's own listener, next to the deployment (a gateway points its IMDS,
//! `IDENTITY_ENDPOINT` or authority URL at [`crate::SimHandle::endpoint`]):
//!
//! | Request | Shape |
//! |---|---|
//! | `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R[&client_id=C]`, `Metadata: true` | Azure IMDS |
//! | `GET /msi/token?api-version=2019-08-01&resource=R[&client_id=C]`, `X-IDENTITY-HEADER: S` | App Service, Container Apps |
//! | `POST /{tenant}/oauth2/v2.0/token` (form: `client_credentials`, secret or federated assertion) | Entra v2 |
//! | `GET /{tenant}/v2.0/.well-known/openid-configuration` | OpenID discovery |
//! | `GET /{tenant}/discovery/v2.0/keys` | JWKS |
//!
//! Tokens are RS256 JWTs signed with committed test keys (`keys/`), for `https://cognitiveservices.azure.com`.

mod accepted;
mod client_credentials;
mod config;
pub(crate) mod endpoints;
pub(crate) mod guard;
mod issuer;
mod jwt;
mod keys;
mod managed;

pub use config::{EntraConfig, TokenOutage, AUDIENCE, SCOPE};
pub use issuer::{Issuer, TokenStats, TokenVersion};
pub use jwt::{Signing, TokenError};
