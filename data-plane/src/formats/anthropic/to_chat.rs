//! An Anthropic Messages answer and stream → OpenAI chat completions.
