//! What the simulated Entra ID tenant knows: who the workload is, its credentials, token lifetime.

use std::time::Duration;

/// The one audience the simulated tokens are for (Azure OpenAI's resource).
pub const AUDIENCE: &str = "https://cognitiveservices.azure.com";

/// The v2 scope asking for [`AUDIENCE`].
pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// The tenant and the one workload identity the token service issues for. The defaults are made
/// up and fixed, so tests can write them down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraConfig {
    /// Tenant id, the `{tenant}` of the v2 paths and the `tid` claim.
    pub tenant: String,
    /// The identity's application (client) id: `appid`/`azp`, and the `client_id` the token
    /// endpoints accept (managed identity requests may omit it).
    pub client_id: String,
    /// The identity's object id: `oid` and `sub`.
    pub object_id: String,
    /// The v2 endpoint's accepted `client_secret`.
    pub client_secret: String,
    /// The v2 endpoint's accepted `client_assertion` (what AKS workload identity reads from
    /// `AZURE_FEDERATED_TOKEN_FILE`). Any string: the simulator does not check it is a JWT.
    pub federated_assertion: String,
    /// The `X-IDENTITY-HEADER` the App Service / Container Apps endpoint requires (`IDENTITY_HEADER`).
    pub identity_header: String,
    /// `expires_in` of issued tokens, whole seconds. Azure's are about an hour (client
    /// credentials) to a day (managed identity); tests of refresh want seconds.
    pub token_lifetime: Duration,
}

impl Default for EntraConfig {
    fn default() -> Self {
        Self {
            tenant: "5e100000-0000-4000-8000-00000000e1d0".into(),
            client_id: "c1e47000-0000-4000-8000-000000000001".into(),
            object_id: "0b1ec700-0000-4000-8000-000000000002".into(),
            client_secret: "sim-client-secret".into(),
            federated_assertion: "sim-federated-assertion".into(),
            identity_header: "sim-identity-header".into(),
            token_lifetime: Duration::from_secs(3599),
        }
    }
}

/// What the token endpoints do instead of issuing, so a test can take them down and back up.
/// JWKS and OpenID configuration stay up: they are another service in Azure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenOutage {
    /// Issue tokens.
    #[default]
    Up,
    /// Answer this status with an OAuth-shaped `temporarily_unavailable` error.
    Status(u16),
    /// Close the connection without answering (the listener is shared with the deployment, so
    /// connects still succeed).
    Drop,
}
