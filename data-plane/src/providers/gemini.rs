//! Gemini's OpenAI-compatible API
//! (`https://generativelanguage.googleapis.com/v1beta/openai`): reached as
//! OpenAI's ([`super::openai`], the key as a bearer token), but for the
//! schemas of a chat request's tools and response format, which Gemini
//! checks against its own subset and refuses whole over one keyword outside
//! it: they are made that subset first ([`google::schema`]).

use hyper::body::Bytes;

use super::openai::OpenAi;
use super::{Address, Provider, ProviderError};
use crate::config::snapshot::ResolvedDeployment;
use crate::formats::{Format, TranslateError, google};

pub struct Gemini;

impl Provider for Gemini {
    fn address(
        &self,
        deployment: &ResolvedDeployment,
        upstream_model: &str,
        format: Format,
        stream: bool,
    ) -> Result<Address, ProviderError> {
        OpenAi.address(deployment, upstream_model, format, stream)
    }

    fn adapt_body(
        &self,
        body: Bytes,
        format: Format,
        _upstream_model: &str,
        _betas: &[&str],
    ) -> Result<Bytes, TranslateError> {
        Ok(match format {
            Format::ChatCompletions => google::schema::chat_body(&body).map_or(body, Bytes::from),
            _ => body,
        })
    }
}
