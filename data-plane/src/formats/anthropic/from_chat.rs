//! An OpenAI chat completions request → an Anthropic Messages request.
