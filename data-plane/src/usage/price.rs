//! What a request costs (DESIGN §7): integer micro-USD from a deployment's
//! per-token prices, and the worst case a request reserves before it is sent.
//!
//! Rounding: a request's cost is `prompt × input_cost_per_token + completion
//! × output_cost_per_token` USD, computed in `f64`, times 10⁶, rounded to the
//! nearest micro-dollar (halves away from zero), once per request. Sums of
//! requests are exact integers from there on: what `GetUsage` answers is the
//! sum of these per-request figures, never a product of summed tokens.
//!
//! The prompt's tokens read from the upstream's prompt cache, and those
//! written to it, cost the deployment's `cache_read_input_token_cost` and
//! `cache_creation_input_token_cost` when it sets them (LiteLLM's names):
//! each such token adds the difference from `input_cost_per_token` to the
//! sum above, so a deployment that sets neither costs exactly what it did.
//!
//! An image generation's images cost the deployment's `output_cost_per_image`
//! each (LiteLLM's name; DALL·E and Imagen are priced so), on top of the
//! tokens the GPT image models report.

use sluice_proto::admin::v1::Deployment;

use super::Tokens;

/// The completion a request reserves for when it sets no `max_tokens` /
/// `max_completion_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The output tokens one generated image reserves for: the most the GPT
/// image models report for one (`gpt-image-1`, high quality, 1024×1536).
pub const IMAGE_OUTPUT_TOKENS: u64 = 6240;

/// What a request asks for, priced at its worst by [`worst_case`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ask {
    /// The prompt's estimated tokens.
    pub prompt: u64,
    /// Each answer's most completion tokens (`max_tokens`, or
    /// [`DEFAULT_MAX_TOKENS`] when `None`).
    pub max_tokens: Option<u64>,
    /// How many answers (`n`): completions, or images.
    pub n: u64,
    /// The answers are images, priced per image as well.
    pub images: bool,
}

/// A deployment's prices, USD per token.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prices {
    pub input: f64,
    pub output: f64,
    /// A prompt token read from the cache; unset: `input`.
    pub cache_read: Option<f64>,
    /// A prompt token written to the cache; unset: `input`.
    pub cache_write: Option<f64>,
    /// An image generated.
    pub image: f64,
}

impl Prices {
    pub fn of(d: &Deployment) -> Prices {
        Prices {
            input: d.input_cost_per_token,
            output: d.output_cost_per_token,
            cache_read: d.cache_read_input_token_cost,
            cache_write: d.cache_creation_input_token_cost,
            image: d.output_cost_per_image,
        }
    }

    /// The most a prompt token can cost: a cache write may cost more than
    /// `input` (Anthropic's are 1.25×), a read never should.
    fn dearest_prompt_token(&self) -> f64 {
        self.input.max(self.cache_write.unwrap_or(self.input))
    }
}

/// micro-USD for `tokens` at `prices`.
pub fn cost(prices: Prices, tokens: Tokens) -> i64 {
    // A cache price adds its difference from `input`: with none set the
    // terms are exactly 0, and the sum is the plain formula's to the bit.
    let delta = |price: Option<f64>, n: u64| price.map_or(0.0, |p| n as f64 * (p - prices.input));
    let usd = tokens.prompt as f64 * prices.input
        + tokens.completion as f64 * prices.output
        + delta(prices.cache_read, tokens.cache_read)
        + delta(prices.cache_write, tokens.cache_write)
        + tokens.images as f64 * prices.image;
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
/// estimated prompt (every token at its dearest, a cache write when that
/// costs more) and the completion it allows, rounded up; and the most
/// credits any charges per call.
pub fn worst_case<'a>(
    deployments: impl IntoIterator<Item = &'a Deployment>,
    ask: Ask,
) -> (i64, i64) {
    let (mut input, mut output, mut image, mut credits) = (0f64, 0f64, 0f64, 0i64);
    for d in deployments {
        let prices = Prices::of(d);
        input = input.max(prices.dearest_prompt_token());
        output = output.max(prices.output);
        image = image.max(prices.image);
        credits = credits.max(d.credits_per_call.max(0));
    }
    let n = ask.n.max(1) as f64;
    let completion = ask.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) as f64 * n;
    let images = if ask.images { n } else { 0.0 };
    let usd = ask.prompt as f64 * input + completion * output + images * image;
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

    fn plain(input: f64, output: f64) -> Prices {
        Prices {
            input,
            output,
            ..Prices::default()
        }
    }

    fn ask(prompt: u64, max_tokens: Option<u64>) -> Ask {
        Ask {
            prompt,
            max_tokens,
            n: 1,
            images: false,
        }
    }

    fn t(prompt: u64, completion: u64) -> Tokens {
        Tokens {
            prompt,
            completion,
            ..Tokens::default()
        }
    }

    #[test]
    fn cost_is_rounded_once_per_request() {
        // gpt-4o's list prices: $2.50 and $10 per million tokens.
        let cost = |input, output, tokens| cost(plain(input, output), tokens);
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
    fn cached_prompt_tokens_cost_the_cache_prices_when_set() {
        // Claude Sonnet's list prices: $3 in, $15 out, cache reads $0.30,
        // writes $3.75 per million tokens.
        let sonnet = Prices {
            input: 3e-6,
            output: 1.5e-5,
            cache_read: Some(3e-7),
            cache_write: Some(3.75e-6),
            image: 0.0,
        };
        let tokens = Tokens {
            prompt: 1_000_000 + 2_000_000 + 100_000,
            completion: 10_000,
            cache_read: 2_000_000,
            cache_write: 100_000,
            images: 0,
        };
        // 3.00 + 0.60 + 0.375 + 0.15 USD.
        assert_eq!(cost(sonnet, tokens), 4_125_000);
        // Unset, a cached token costs `input`: exactly the plain figure.
        let unset = Prices {
            cache_read: None,
            cache_write: None,
            ..sonnet
        };
        assert_eq!(cost(unset, tokens), cost(unset, t(tokens.prompt, 10_000)));
        assert_eq!(cost(unset, tokens), 9_450_000);
        // One set, the other not.
        let reads_only = Prices {
            cache_write: None,
            ..sonnet
        };
        assert_eq!(cost(reads_only, tokens), 4_050_000);
        // Free cache reads are a price too.
        let free = Prices {
            cache_read: Some(0.0),
            ..reads_only
        };
        assert_eq!(cost(free, tokens), 3_450_000);
    }

    #[test]
    fn a_dear_cache_write_raises_the_worst_case() {
        let mut d = priced(1e-6, 0.0, 0);
        d.cache_creation_input_token_cost = Some(2e-6);
        d.cache_read_input_token_cost = Some(1e-7);
        assert_eq!(worst_case([&d], ask(1000, Some(0))), (2000, 0));
        d.cache_creation_input_token_cost = Some(5e-7);
        assert_eq!(worst_case([&d], ask(1000, Some(0))), (1000, 0));
    }

    #[test]
    fn the_worst_case_takes_the_dearest_deployment_and_the_allowed_completion() {
        let cheap = priced(1e-6, 1e-6, 1);
        let dear = priced(2e-6, 4e-6, 3);
        let (spend, credits) = worst_case([&cheap, &dear], ask(1000, Some(500)));
        assert_eq!(spend, 2000 + 2000);
        assert_eq!(credits, 3);
        let (spend, _) = worst_case([&cheap], ask(0, None));
        assert_eq!(spend, DEFAULT_MAX_TOKENS as i64);
        assert_eq!(worst_case([], ask(100, None)), (0, 0));
        // `n` completions, each up to `max_tokens`.
        let three = Ask {
            n: 3,
            ..ask(1000, Some(500))
        };
        assert_eq!(worst_case([&dear], three).0, 2000 + 3 * 2000);
    }

    #[test]
    fn images_cost_their_price_each_on_top_of_their_tokens() {
        // dall-e-3 standard 1024×1024: $0.04 an image, no tokens reported.
        let dalle = Prices {
            image: 0.04,
            ..Prices::default()
        };
        let two = Tokens {
            prompt: 10,
            images: 2,
            ..Tokens::default()
        };
        assert_eq!(cost(dalle, two), 80_000);
        // gpt-image-1: $5 in, $40 out per million tokens, none per image.
        let gpt_image = plain(5e-6, 4e-5);
        assert_eq!(
            cost(
                gpt_image,
                Tokens {
                    images: 1,
                    ..t(50, 4160)
                }
            ),
            166_650
        );
        // The worst case: n images at the dearest per-image price, each
        // with its most output tokens.
        let mut d = priced(5e-6, 4e-5, 0);
        d.output_cost_per_image = 0.04;
        let images = Ask {
            prompt: 50,
            max_tokens: Some(IMAGE_OUTPUT_TOKENS),
            n: 2,
            images: true,
        };
        assert_eq!(worst_case([&d], images).0, 250 + 2 * 249_600 + 2 * 40_000);
        // Not images: no per-image price, whatever the deployment's.
        assert_eq!(
            worst_case(
                [&d],
                Ask {
                    images: false,
                    ..images
                }
            )
            .0,
            250 + 2 * 249_600
        );
    }
}
