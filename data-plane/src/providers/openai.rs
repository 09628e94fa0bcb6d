//! OpenAI and the OpenAI-compatible providers: `{api_base}{endpoint}` (e.g.
//! `https://api.openai.com/v1/chat/completions`), with
//! `Authorization: Bearer <api_key>` when the deployment has a key (local
//! servers such as vLLM or Ollama often need none).

use hyper::header;

use super::{Address, Provider, ProviderError, api_base, secret_header};
use crate::config::snapshot::ResolvedDeployment;
use crate::formats::Format;

pub struct OpenAi;

impl Provider for OpenAi {
    fn address(
        &self,
        deployment: &ResolvedDeployment,
        _upstream_model: &str,
        format: Format,
        _stream: bool,
    ) -> Result<Address, ProviderError> {
        let url = format!("{}{}", api_base(deployment)?, format.path());
        let key = deployment.secrets().api_key.expose();
        let mut headers = Vec::new();
        if !key.is_empty() {
            headers.push((
                header::AUTHORIZATION,
                secret_header(&format!("Bearer {key}"), "api_key")?,
            ));
        }
        Ok(Address { url, headers })
    }
}
