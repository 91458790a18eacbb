//! Configuration of one simulated Azure OpenAI deployment: what it serves, how fast, how it throttles.

use std::io;
use std::time::Duration;

use crate::entra::{EntraConfig, Issuer};

/// Everything a simulated deployment needs to know before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Name reported in the `x-sim-name` header, e.g. "eastus-ptu", so tests can tell upstreams apart.
    pub name: String,
    /// Region reported in the `x-ms-region` header, like Azure does.
    pub region: String,
    /// The one deployment name this simulated resource serves, e.g. "gpt-4o-mini".
    pub deployment: String,
    /// When set, requests must carry `api-key: K` or `Authorization: Bearer K`, else 401.
    /// Only for `auth: SimAuth::Key`.
    pub api_key: Option<String>,
    /// Which credentials the deployment takes.
    pub auth: SimAuth,
    /// The simulated Entra ID tenant this simulator's token service issues for.
    pub entra: EntraConfig,
    /// An issuer shared with other simulators (one tenant in front of several deployments);
    /// `None` makes a private one from `entra`, which `entra` is then ignored in favour of.
    pub issuer: Option<Issuer>,
    /// How the deployment throttles.
    pub mode: SimMode,
    /// Time to first token.
    pub ttft: Duration,
    /// Time between tokens (10 ms is what GPT-4o-mini measures at).
    pub tbt: Duration,
    /// How many tokens the model "wants" to answer; the output is `min(cap, natural_tokens)`.
    pub natural_tokens: u32,
    /// When a non-streaming generation would take longer than this, answer 408 after this long.
    pub sync_timeout: Option<Duration>,
    /// How many requests are kept whole for inspection (the first ones); later ones are only
    /// counted. Load runs send millions: kept whole, they once filled 24 GB.
    pub record_limit: usize,
}

/// Requests kept whole by default: plenty for any test, a few MB at most.
pub const RECORD_LIMIT: usize = 10_000;

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            name: "sim".to_string(),
            region: "eastus".to_string(),
            deployment: "gpt-4o-mini".to_string(),
            api_key: None,
            auth: SimAuth::Key,
            entra: EntraConfig::default(),
            issuer: None,
            mode: SimMode::Unlimited,
            ttft: Duration::from_millis(50),
            tbt: Duration::from_millis(10),
            natural_tokens: 200,
            sync_timeout: None,
            record_limit: RECORD_LIMIT,
        }
    }
}

impl SimConfig {
    /// Rejects configurations the simulator cannot honour, so `spawn` fails early instead of
    /// dividing by zero in the limiter later.
    pub fn validate(self) -> io::Result<Self> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        if self.deployment.is_empty() || self.deployment.contains('/') {
            return Err(invalid(format!(
                "sim {}: deployment name {:?} must be non-empty and contain no '/'",
                self.name, self.deployment
            )));
        }
        if self.auth == SimAuth::Entra && self.api_key.is_some() {
            return Err(invalid(format!(
                "sim {}: api_key has no use with auth: entra (keys are refused there)",
                self.name
            )));
        }
        match self.mode {
            SimMode::Provisioned {
                tokens_per_minute: 0,
            }
            | SimMode::Standard {
                tokens_per_minute: 0,
            } => Err(invalid(format!(
                "sim {}: tokens_per_minute must be greater than 0",
                self.name
            ))),
            _ => Ok(self),
        }
    }
}

/// Which credentials a simulated deployment takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimAuth {
    /// `api_key` (when set) as `api-key` or as a Bearer token: the simulator's original behaviour.
    #[default]
    Key,
    /// Only `Authorization: Bearer` tokens from this simulator's issuer, unexpired, for
    /// `https://cognitiveservices.azure.com`; else 401. Any `api-key` header gets 403
    /// `AuthenticationTypeDisabled`, as with Azure's `disableLocalAuth`.
    Entra,
}

/// How a simulated deployment throttles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimMode {
    /// Never throttles.
    Unlimited,
    /// Provisioned throughput (PTU): a leaky bucket of `tokens_per_minute` tokens draining continuously.
    Provisioned { tokens_per_minute: u64 },
    /// Standard (pay-as-you-go): TPM and RPM (6 per 1000 TPM) quotas enforced over 10-second windows.
    Standard { tokens_per_minute: u64 },
}

impl std::fmt::Display for SimMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimMode::Unlimited => write!(f, "unlimited"),
            SimMode::Provisioned { tokens_per_minute } => {
                write!(f, "provisioned, {tokens_per_minute} TPM")
            }
            SimMode::Standard { tokens_per_minute } => {
                write!(f, "standard, {tokens_per_minute} TPM")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_tpm_is_rejected() {
        let cfg = SimConfig {
            mode: SimMode::Provisioned {
                tokens_per_minute: 0,
            },
            ..SimConfig::default()
        };
        assert!(cfg.validate().is_err());
        assert!(SimConfig::default().validate().is_ok());
    }

    #[test]
    fn entra_with_a_key_is_rejected() {
        let cfg = SimConfig {
            auth: SimAuth::Entra,
            api_key: Some("k".into()),
            ..SimConfig::default()
        };
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn deployment_with_slash_is_rejected() {
        let cfg = SimConfig {
            deployment: "a/b".into(),
            ..SimConfig::default()
        };
        assert!(cfg.validate().is_err());
    }
}
