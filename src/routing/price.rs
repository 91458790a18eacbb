//! What a pool's tokens cost: Standard deployments by the token, provisioned ones by the hour
//! (spread over the tokens their capacity can serve in that hour).

/// Prices in US dollars, as Azure lists them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Price {
    /// No price configured: no cost is counted.
    #[default]
    Unpriced,
    /// Pay-as-you-go, per million tokens.
    PerToken {
        input: f64,
        cached_input: f64,
        output: f64,
    },
    /// A provisioned deployment's price per hour, paid whether it is used or not.
    PerHour(f64),
}

/// The tokens of one answer, as its usage reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    /// Prompt tokens, cached ones included (Azure's `prompt_tokens`).
    pub prompt: u64,
    /// Of those, the ones served from the prompt cache.
    pub cached: u64,
    pub completion: u64,
}

impl Price {
    /// What `tokens` cost on a deployment of this price whose capacity is `capacity_tpm`
    /// tokens per minute. A provisioned deployment's hour is spread over the tokens it could
    /// serve in that hour; what it did not serve is its unused share.
    pub fn cost(&self, tokens: Tokens, capacity_tpm: Option<u64>) -> f64 {
        match *self {
            Price::Unpriced => 0.0,
            Price::PerToken {
                input,
                cached_input,
                output,
            } => {
                let cached = tokens.cached.min(tokens.prompt);
                ((tokens.prompt - cached) as f64 * input
                    + cached as f64 * cached_input
                    + tokens.completion as f64 * output)
                    / 1e6
            }
            Price::PerHour(hour) => match capacity_tpm {
                Some(cap) if cap > 0 => {
                    (tokens.prompt + tokens.completion) as f64 * hour / (cap as f64 * 60.0)
                }
                _ => 0.0,
            },
        }
    }

    pub fn per_hour(&self) -> Option<f64> {
        match *self {
            Price::PerHour(h) => Some(h),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_token_prices_cached_input_apart() {
        let p = Price::PerToken {
            input: 0.15,
            cached_input: 0.075,
            output: 0.6,
        };
        let t = Tokens {
            prompt: 1_000_000,
            cached: 400_000,
            completion: 500_000,
        };
        let want = 0.6 * 0.15 + 0.4 * 0.075 + 0.5 * 0.6;
        assert!((p.cost(t, None) - want).abs() < 1e-12);
    }

    #[test]
    fn per_hour_is_spread_over_capacity() {
        // 1,000 TPM for an hour is 60,000 tokens for $6: 10 tokens cost $0.001.
        let p = Price::PerHour(6.0);
        let t = Tokens {
            prompt: 4,
            cached: 0,
            completion: 6,
        };
        assert!((p.cost(t, Some(1000)) - 0.001).abs() < 1e-12);
        assert_eq!(p.cost(t, None), 0.0);
        assert_eq!(Price::Unpriced.cost(t, Some(1000)), 0.0);
    }
}
