//! Where a request goes when its group cannot serve it (DESIGN §5): the
//! fallback groups, in order, as a pure function of (router settings, the
//! group, why it failed, what the request asked).
//!
//! | the group failed with | fallbacks tried |
//! |---|---|
//! | a content-filter refusal | `content_policy_fallbacks` for the group, and nothing else |
//! | a prompt too long (or every deployment too small for it) | `context_window_fallbacks` for the group, else as below |
//! | anything else that moves on (429, 5xx, timeouts, connection errors, 401/404, every deployment cooling) | the request's own `fallbacks`, else `fallbacks` for the group, else `default_fallbacks` |
//!
//! A group's list is found under the name the client asked for, then under
//! the group it resolved to (an alias's fallbacks are the alias's, when it
//! has any). The group itself and repeats are left out, and at most
//! `max_fallbacks` groups are returned. `disable_fallbacks: true` in the
//! request leaves none. Whether the caller may use each one is checked by
//! the router (DESIGN §3.4), not here.

use sluice_proto::admin::v1::{Fallback, RouterSettings};

/// Why a group is being left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackKind {
    Generic,
    ContextWindow,
    ContentPolicy,
}

impl FallbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackKind::Generic => "generic",
            FallbackKind::ContextWindow => "context_window",
            FallbackKind::ContentPolicy => "content_policy",
        }
    }
}

pub use crate::request::parse::RequestFallbacks;

/// The fallback groups for `requested` (resolved to `group`), in order.
pub fn fallbacks<'a>(
    settings: &'a RouterSettings,
    requested: &str,
    group: &str,
    kind: FallbackKind,
    request: &'a RequestFallbacks,
    max_fallbacks: usize,
) -> Vec<&'a str> {
    if request.disabled {
        return Vec::new();
    }
    let listed = |lists: &'a [Fallback]| -> Option<&'a [String]> {
        [requested, group].into_iter().find_map(|name| {
            lists
                .iter()
                .find(|f| f.model_group == name)
                .map(|f| f.fallbacks.as_slice())
        })
    };
    let generic = || -> &'a [String] {
        request
            .fallbacks
            .as_deref()
            .or_else(|| listed(&settings.fallbacks))
            .unwrap_or(&settings.default_fallbacks)
    };
    let chosen: &[String] = match kind {
        FallbackKind::ContentPolicy => listed(&settings.content_policy_fallbacks).unwrap_or(&[]),
        FallbackKind::ContextWindow => {
            listed(&settings.context_window_fallbacks).unwrap_or_else(generic)
        }
        FallbackKind::Generic => generic(),
    };
    let mut out: Vec<&str> = Vec::with_capacity(chosen.len().min(max_fallbacks));
    for name in chosen {
        let name = name.trim();
        if out.len() == max_fallbacks {
            break;
        }
        if name.is_empty() || name == requested || name == group || out.contains(&name) {
            continue;
        }
        out.push(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(group: &str, to: &[&str]) -> Fallback {
        Fallback {
            model_group: group.into(),
            fallbacks: to.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn settings() -> RouterSettings {
        RouterSettings {
            fallbacks: vec![fb(
                "my-custom-model",
                &["my-other-model", "my-custom-model", "third"],
            )],
            context_window_fallbacks: vec![fb("my-custom-model", &["big-context"])],
            content_policy_fallbacks: vec![fb("my-custom-model", &["lenient"])],
            default_fallbacks: vec!["default-group".into()],
            ..Default::default()
        }
    }

    fn plan(kind: FallbackKind, requested: &str, request: &RequestFallbacks) -> Vec<String> {
        let s = settings();
        fallbacks(&s, requested, requested, kind, request, 5)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn generic_lists_with_the_group_itself_left_out() {
        let none = RequestFallbacks::default();
        assert_eq!(
            plan(FallbackKind::Generic, "my-custom-model", &none),
            ["my-other-model", "third"]
        );
        assert_eq!(
            plan(FallbackKind::Generic, "other", &none),
            ["default-group"]
        );
    }

    #[test]
    fn a_refusal_takes_only_content_policy_fallbacks() {
        let none = RequestFallbacks::default();
        assert_eq!(
            plan(FallbackKind::ContentPolicy, "my-custom-model", &none),
            ["lenient"]
        );
        assert!(
            plan(FallbackKind::ContentPolicy, "other", &none).is_empty(),
            "never default_fallbacks"
        );
        let asked = RequestFallbacks {
            fallbacks: Some(vec!["x".into()]),
            disabled: false,
        };
        assert!(plan(FallbackKind::ContentPolicy, "other", &asked).is_empty());
    }

    #[test]
    fn context_window_lists_else_generic() {
        let none = RequestFallbacks::default();
        assert_eq!(
            plan(FallbackKind::ContextWindow, "my-custom-model", &none),
            ["big-context"]
        );
        assert_eq!(
            plan(FallbackKind::ContextWindow, "other", &none),
            ["default-group"]
        );
    }

    #[test]
    fn the_request_decides_first() {
        let asked = RequestFallbacks {
            fallbacks: Some(vec!["mine".into(), "mine".into(), " ".into()]),
            disabled: false,
        };
        assert_eq!(
            plan(FallbackKind::Generic, "my-custom-model", &asked),
            ["mine"]
        );
        let disabled = RequestFallbacks {
            fallbacks: Some(vec!["mine".into()]),
            disabled: true,
        };
        assert!(plan(FallbackKind::Generic, "my-custom-model", &disabled).is_empty());
        assert!(plan(FallbackKind::ContextWindow, "my-custom-model", &disabled).is_empty());
    }

    #[test]
    fn an_alias_uses_its_own_list_then_its_groups() {
        let s = settings();
        let none = RequestFallbacks::default();
        assert_eq!(
            fallbacks(
                &s,
                "alias",
                "my-custom-model",
                FallbackKind::Generic,
                &none,
                5
            ),
            ["my-other-model", "third"]
        );
    }

    #[test]
    fn at_most_max_fallbacks() {
        let s = RouterSettings {
            default_fallbacks: (0..10).map(|i| format!("g{i}")).collect(),
            ..Default::default()
        };
        let none = RequestFallbacks::default();
        assert_eq!(
            fallbacks(&s, "x", "x", FallbackKind::Generic, &none, 3),
            ["g0", "g1", "g2"]
        );
        assert!(fallbacks(&s, "x", "x", FallbackKind::Generic, &none, 0).is_empty());
    }
}
