//! `RouterService`: the routing settings every data plane applies (DESIGN §5).

use sluice_proto::admin::v1::router_service_server::RouterService;
use sluice_proto::admin::v1::{
    Fallback, GetRouterSettingsRequest, RouterSettings, RouterSettingsWriteResponse,
    UpdateRouterSettingsRequest,
};
use tonic::{Request, Response, Status};

use super::{Admin, expect_revision, lost_race, merge};
use crate::catalog::{Attempt, put_if, retry_on_conflict};
use crate::error::{AdminError, AdminResult};
use crate::litellm::ROUTING_STRATEGIES;
use crate::resources::{ROUTER_SETTINGS_ID, Resource};
use crate::store::Txn;
use crate::validate;

/// At most this many retries: each one is another upstream call.
const MAX_RETRIES: u32 = 10;

fn check_fallbacks(field: &str, list: &[Fallback]) -> AdminResult<()> {
    validate::list_len(field, list.len())?;
    for (i, f) in list.iter().enumerate() {
        validate::model_name(&format!("{field}[{i}].model_group"), &f.model_group)?;
        validate::model_list(&format!("{field}[{i}].fallbacks"), &f.fallbacks)?;
        if f.fallbacks.is_empty() {
            return Err(AdminError::invalid(
                format!("{field}[{i}].fallbacks"),
                "must name at least one model group",
            ));
        }
    }
    Ok(())
}

pub fn check_router_settings(s: &RouterSettings, field: &str) -> AdminResult<()> {
    let f = |name: &str| format!("{field}.{name}");
    if !s.routing_strategy.is_empty() && !ROUTING_STRATEGIES.contains(&s.routing_strategy.as_str())
    {
        return Err(AdminError::invalid(
            f("routing_strategy"),
            format!(
                "{:?} is not one of {}",
                s.routing_strategy,
                ROUTING_STRATEGIES.join(", ")
            ),
        ));
    }
    if let Some(n) = s.num_retries
        && n > MAX_RETRIES
    {
        return Err(AdminError::invalid(
            f("num_retries"),
            format!("must be at most {MAX_RETRIES}, got {n}"),
        ));
    }
    validate::duration(&f("cooldown_time"), s.cooldown_time.as_ref())?;
    validate::duration(&f("timeout"), s.timeout.as_ref())?;
    check_fallbacks(&f("fallbacks"), &s.fallbacks)?;
    check_fallbacks(&f("context_window_fallbacks"), &s.context_window_fallbacks)?;
    check_fallbacks(&f("content_policy_fallbacks"), &s.content_policy_fallbacks)?;
    validate::model_list(&f("default_fallbacks"), &s.default_fallbacks)?;
    Ok(())
}

#[tonic::async_trait]
impl RouterService for Admin {
    async fn get_router_settings(
        &self,
        _request: Request<GetRouterSettingsRequest>,
    ) -> Result<Response<RouterSettings>, Status> {
        let settings = self
            .catalog
            .get::<RouterSettings>(ROUTER_SETTINGS_ID)
            .await?
            .map(|v| v.value)
            .unwrap_or_default();
        Ok(Response::new(settings))
    }

    async fn update_router_settings(
        &self,
        request: Request<UpdateRouterSettingsRequest>,
    ) -> Result<Response<RouterSettingsWriteResponse>, Status> {
        let req = request.into_inner();
        let update = req.settings.clone().unwrap_or_default();
        let resp = retry_on_conflict!({
            let current = self
                .catalog
                .get::<RouterSettings>(ROUTER_SETTINGS_ID)
                .await?;
            let (mut settings, rev) = match current {
                Some(v) => (v.value, v.mod_revision),
                None => (RouterSettings::default(), 0),
            };
            expect_revision(
                RouterSettings::KIND,
                ROUTER_SETTINGS_ID,
                req.expected_revision,
                rev,
            )?;
            merge!(
                settings,
                update,
                req.update_mask.as_ref(),
                "RouterSettings",
                [
                    routing_strategy,
                    num_retries,
                    allowed_fails,
                    cooldown_time,
                    timeout,
                    fallbacks,
                    context_window_fallbacks,
                    content_policy_fallbacks,
                    default_fallbacks,
                ]
            );
            check_router_settings(&settings, "settings")?;
            let o = self
                .catalog
                .commit(put_if(Txn::new(), &settings, rev))
                .await?;
            if o.succeeded {
                settings.revision = o.revision;
                Ok(Attempt::Done(RouterSettingsWriteResponse {
                    settings: Some(settings),
                    revision: o.revision,
                }))
            } else if req.expected_revision != 0 {
                Err(lost_race(RouterSettings::KIND, ROUTER_SETTINGS_ID))
            } else {
                Ok(Attempt::Conflict)
            }
        })?;
        Ok(Response::new(resp))
    }
}
