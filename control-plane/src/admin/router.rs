//! `RouterService`: the routing settings every data plane applies (DESIGN §5).

use sluice_proto::admin::v1::router_service_server::RouterService;
use sluice_proto::admin::v1::{
    Fallback, GetRouterSettingsRequest, RetryPolicy, RouterSettings, RouterSettingsWriteResponse,
    UpdateRouterSettingsRequest,
};
use tonic::{Request, Response, Status};

use super::{Admin, expect_revision, merge};
use crate::catalog::{pinned_outcome, put_if, retry_on_conflict};
use crate::error::{AdminError, AdminResult};
use crate::litellm::ROUTING_STRATEGIES;
use crate::resources::{ROUTER_SETTINGS_ID, Resource};
use crate::store::Txn;
use crate::validate;

/// At most this many retries: each one is another upstream call.
const MAX_RETRIES: u32 = 10;
/// At most this many fallback groups per request: each may cost
/// `1 + num_retries` upstream calls.
pub const MAX_FALLBACKS: u32 = 20;

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
        // A group falling back to itself would only repeat the retries it
        // just exhausted.
        if let Some(j) = f.fallbacks.iter().position(|g| *g == f.model_group) {
            return Err(AdminError::invalid(
                format!("{field}[{i}].fallbacks[{j}]"),
                format!("names the group {:?} itself", f.model_group),
            ));
        }
    }
    Ok(())
}

fn check_retry_count(field: &str, n: Option<u32>) -> AdminResult<()> {
    match n {
        Some(n) if n > MAX_RETRIES => Err(AdminError::invalid(
            field,
            format!("must be at most {MAX_RETRIES}, got {n}"),
        )),
        _ => Ok(()),
    }
}

fn check_retry_policy(field: &str, p: &RetryPolicy) -> AdminResult<()> {
    let f = |name: &str| format!("{field}.{name}");
    check_retry_count(&f("bad_request_error_retries"), p.bad_request_error_retries)?;
    check_retry_count(
        &f("authentication_error_retries"),
        p.authentication_error_retries,
    )?;
    check_retry_count(&f("timeout_error_retries"), p.timeout_error_retries)?;
    check_retry_count(&f("rate_limit_error_retries"), p.rate_limit_error_retries)?;
    check_retry_count(
        &f("content_policy_violation_error_retries"),
        p.content_policy_violation_error_retries,
    )?;
    check_retry_count(
        &f("internal_server_error_retries"),
        p.internal_server_error_retries,
    )
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
    if let Some(b) = s.lowest_latency_buffer
        && !(b.is_finite() && b >= 0.0)
    {
        return Err(AdminError::invalid(
            f("lowest_latency_buffer"),
            format!(
                "must be a finite number >= 0 (0.5 = up to 50% slower than the fastest), got {b}"
            ),
        ));
    }
    check_retry_count(&f("num_retries"), s.num_retries)?;
    if let Some(p) = &s.retry_policy {
        check_retry_policy(&f("retry_policy"), p)?;
    }
    if let Some(n) = s.max_fallbacks
        && n > MAX_FALLBACKS
    {
        return Err(AdminError::invalid(
            f("max_fallbacks"),
            format!("must be at most {MAX_FALLBACKS}, got {n}"),
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
        let resp = retry_on_conflict!(RouterSettings::KIND, ROUTER_SETTINGS_ID, {
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
                    retry_policy,
                    allowed_fails_policy,
                    max_fallbacks,
                    enable_pre_call_checks,
                    lowest_latency_buffer,
                ]
            );
            check_router_settings(&settings, "settings")?;
            let o = self
                .catalog
                .commit(put_if(Txn::new(), &settings, rev))
                .await?;
            pinned_outcome(
                o,
                req.expected_revision,
                RouterSettings::KIND,
                ROUTER_SETTINGS_ID,
                |revision| RouterSettingsWriteResponse {
                    settings: Some(RouterSettings {
                        revision,
                        ..settings
                    }),
                    revision,
                },
            )
        })?;
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::admin::v1::AllowedFailsPolicy;

    fn refused(s: RouterSettings) -> (String, String) {
        match check_router_settings(&s, "settings") {
            Err(AdminError::Invalid { field, rule }) => (field, rule),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    fn fallback(group: &str, targets: &[&str]) -> Fallback {
        Fallback {
            model_group: group.into(),
            fallbacks: targets.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn every_new_field_accepts_its_sensible_values() {
        let s = RouterSettings {
            routing_strategy: "cost-based-routing".into(),
            lowest_latency_buffer: Some(0.0),
            retry_policy: Some(RetryPolicy {
                rate_limit_error_retries: Some(MAX_RETRIES),
                bad_request_error_retries: Some(0),
                ..Default::default()
            }),
            allowed_fails_policy: Some(AllowedFailsPolicy {
                rate_limit_error_allowed_fails: Some(u32::MAX),
                ..Default::default()
            }),
            max_fallbacks: Some(MAX_FALLBACKS),
            enable_pre_call_checks: true,
            fallbacks: vec![fallback("a", &["b", "c"])],
            ..Default::default()
        };
        check_router_settings(&s, "settings").unwrap();
        for strategy in ROUTING_STRATEGIES {
            let s = RouterSettings {
                routing_strategy: strategy.to_string(),
                ..Default::default()
            };
            check_router_settings(&s, "settings").unwrap();
        }
    }

    #[test]
    fn an_unknown_strategy_is_refused_naming_the_known_ones() {
        let (field, message) = refused(RouterSettings {
            routing_strategy: "fastest".into(),
            ..Default::default()
        });
        assert_eq!(field, "settings.routing_strategy");
        assert!(message.contains("cost-based-routing"), "{message}");
    }

    #[test]
    fn a_negative_or_non_finite_latency_buffer_is_refused() {
        for b in [-0.1, f64::NAN, f64::INFINITY] {
            let (field, _) = refused(RouterSettings {
                lowest_latency_buffer: Some(b),
                ..Default::default()
            });
            assert_eq!(field, "settings.lowest_latency_buffer", "{b}");
        }
    }

    #[test]
    fn a_fallback_naming_its_own_group_is_refused() {
        let (field, message) = refused(RouterSettings {
            context_window_fallbacks: vec![fallback("a", &["b"]), fallback("c", &["d", "c"])],
            ..Default::default()
        });
        assert_eq!(field, "settings.context_window_fallbacks[1].fallbacks[1]");
        assert_eq!(message, "names the group \"c\" itself");
        let (field, _) = refused(RouterSettings {
            fallbacks: vec![fallback("a", &["a"])],
            ..Default::default()
        });
        assert_eq!(field, "settings.fallbacks[0].fallbacks[0]");
        let (field, _) = refused(RouterSettings {
            content_policy_fallbacks: vec![fallback("a", &["a"])],
            ..Default::default()
        });
        assert_eq!(field, "settings.content_policy_fallbacks[0].fallbacks[0]");
    }

    #[test]
    fn too_many_fallbacks_or_retries_per_class_are_refused() {
        let (field, message) = refused(RouterSettings {
            max_fallbacks: Some(MAX_FALLBACKS + 1),
            ..Default::default()
        });
        assert_eq!(field, "settings.max_fallbacks");
        assert_eq!(message, "must be at most 20, got 21");
        let (field, _) = refused(RouterSettings {
            retry_policy: Some(RetryPolicy {
                timeout_error_retries: Some(MAX_RETRIES + 1),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(field, "settings.retry_policy.timeout_error_retries");
        let (field, _) = refused(RouterSettings {
            num_retries: Some(MAX_RETRIES + 1),
            ..Default::default()
        });
        assert_eq!(field, "settings.num_retries");
    }

    #[test]
    fn negative_durations_are_refused() {
        let negative = Some(prost_types::Duration {
            seconds: -1,
            nanos: 0,
        });
        let (field, _) = refused(RouterSettings {
            cooldown_time: negative,
            ..Default::default()
        });
        assert_eq!(field, "settings.cooldown_time");
        let (field, _) = refused(RouterSettings {
            timeout: negative,
            ..Default::default()
        });
        assert_eq!(field, "settings.timeout");
    }
}
