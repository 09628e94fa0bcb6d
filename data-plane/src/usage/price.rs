//! What a request costs (DESIGN §7): integer micro-USD from a deployment's
//! per-token prices, and the worst case a request reserves before it is sent.
//!
//! Rounding: a request's cost is `prompt × input_cost_per_token + completion
//! × output_cost_per_token` USD, computed in `f64`, times 10⁶, rounded to the
//! nearest micro-dollar (halves away from zero), once per request. Sums of
//! requests are exact integers from there on: what `GetUsage` answers is the
//! sum of these per-request figures, never a product of summed tokens.

use sluice_proto::admin::v1::Deployment;

use super::Tokens;

/// The completion a request reserves for when it sets no `max_tokens` /
/// `max_completion_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// micro-USD for `tokens` at a deployment's prices (USD per token).
pub fn cost(input_cost_per_token: f64, output_cost_per_token: f64, tokens: Tokens) -> i64 {
    let usd = tokens.prompt as f64 * input_cost_per_token
        + tokens.completion as f64 * output_cost_per_token;
    saturate((usd * 1_000_000.0).round())
}

/// Whole micro-USD as an integer: prices are never negative (the control
/// plane checks), and an absurd figure saturates rather than wraps.
fn saturate(m: f64) -> i64 {
    if m.is_nan() || m <= 0.0 {
        0
    } else if m >= i64::MAX as f64 {
        i64::MAX
    } else {
        m as i64
    }
}

/// What a request may cost at most among `deployments` (the group it asks
/// for: the router has not picked yet): the highest prices of any, for the
/// estimated prompt and the completion it allows, rounded up; and the most
/// credits any charges per call.
pub fn worst_case<'a>(
    deployments: impl IntoIterator<Item = &'a Deployment>,
    prompt_tokens: u64,
    max_tokens: Option<u64>,
) -> (i64, i64) {
    let (mut input, mut output, mut credits) = (0f64, 0f64, 0i64);
    for d in deployments {
        input = input.max(d.input_cost_per_token);
        output = output.max(d.output_cost_per_token);
        credits = credits.max(d.credits_per_call.max(0));
    }
    let completion = max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    let usd = prompt_tokens as f64 * input + completion as f64 * output;
    let spend = saturate((usd * 1_000_000.0).ceil());
    (spend, credits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn priced(input: f64, output: f64, credits: i64) -> Deployment {
        Deployment {
            input_cost_per_token: input,
            output_cost_per_token: output,
            credits_per_call: credits,
            ..Default::default()
        }
    }

    #[test]
    fn cost_is_rounded_once_per_request() {
        // gpt-4o's list prices: $2.50 and $10 per million tokens.
        let t = |prompt, completion| Tokens { prompt, completion };
        let gpt4o = |tokens| cost(2.5e-6, 1e-5, tokens);
        assert_eq!(gpt4o(t(1_000_000, 0)), 2_500_000);
        assert_eq!(gpt4o(t(10, 20)), 225);
        assert_eq!(gpt4o(t(100, 100)), 1250);
        assert_eq!(cost(1.4e-7, 0.0, t(10, 0)), 1); // 1.4 µ$
        assert_eq!(cost(1.6e-7, 0.0, t(10, 0)), 2); // 1.6 µ$
        assert_eq!(cost(4e-8, 0.0, t(10, 0)), 0); // 0.4 µ$
        assert_eq!(cost(0.0, 0.0, t(1 << 40, 1 << 40)), 0);
        assert_eq!(cost(1e300, 0.0, t(u64::MAX, 0)), i64::MAX);
    }

    #[test]
    fn the_worst_case_takes_the_dearest_deployment_and_the_allowed_completion() {
        let cheap = priced(1e-6, 1e-6, 1);
        let dear = priced(2e-6, 4e-6, 3);
        let (spend, credits) = worst_case([&cheap, &dear], 1000, Some(500));
        assert_eq!(spend, 2000 + 2000);
        assert_eq!(credits, 3);
        let (spend, _) = worst_case([&cheap], 0, None);
        assert_eq!(spend, DEFAULT_MAX_TOKENS as i64);
        assert_eq!(worst_case([], 100, None), (0, 0));
    }
}
