//! Where usage lives in the store:
//!
//! | key | value |
//! |---|---|
//! | `/sluice/usage/totals/{kind}/{id}` | `StoredUsageTotals`: lifetime and current-window counters |
//! | `/sluice/usage/days/{kind}/{id}/{YYYY-MM-DD}` | `StoredUsageDay`: one UTC day, by model group (by deployment for a model group) |
//! | `/sluice/usage/journals/{node_id}` | `StoredJournalMark`: how far a data plane's journal is counted |
//!
//! `{kind}` is `key`, `team`, `organization` or `model_group`. Ids are
//! written with `%` as `%25` and `/` as `%2F` (model groups such as
//! `openai/*` hold slashes), so a key names one scope and one day only, and
//! the id reads back exactly ([`decode_id`]).

use sluice_proto::config::v1::UsageScope;

/// Everything usage keeps; under `/sluice/` (etcd permissions) but never
/// configuration: the hub skips it.
pub const USAGE_PREFIX: &str = "/sluice/usage/";
pub const TOTALS_PREFIX: &str = "/sluice/usage/totals/";
pub const DAYS_PREFIX: &str = "/sluice/usage/days/";
pub const JOURNALS_PREFIX: &str = "/sluice/usage/journals/";

/// What a usage counter is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKind {
    Key,
    Team,
    Organization,
    ModelGroup,
}

impl ScopeKind {
    pub const ALL: [ScopeKind; 4] = [
        ScopeKind::Key,
        ScopeKind::Team,
        ScopeKind::Organization,
        ScopeKind::ModelGroup,
    ];

    /// The `{kind}` segment of its store keys.
    pub fn segment(self) -> &'static str {
        match self {
            ScopeKind::Key => "key",
            ScopeKind::Team => "team",
            ScopeKind::Organization => "organization",
            ScopeKind::ModelGroup => "model_group",
        }
    }

    pub fn from_segment(segment: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.segment() == segment)
    }

    pub fn wire(self) -> UsageScope {
        match self {
            ScopeKind::Key => UsageScope::Key,
            ScopeKind::Team => UsageScope::Team,
            ScopeKind::Organization => UsageScope::Organization,
            ScopeKind::ModelGroup => UsageScope::ModelGroup,
        }
    }
}

/// One set of counters: a key, a team, an organization or a model group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub kind: ScopeKind,
    pub id: String,
}

impl Scope {
    pub fn new(kind: ScopeKind, id: impl Into<String>) -> Self {
        Scope {
            kind,
            id: id.into(),
        }
    }
}

/// An id as one key segment: `%` → `%25`, `/` → `%2F`, all else as is.
pub fn encode_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

/// The id an [`encode_id`] segment stands for; `None` for a segment it
/// cannot have written (a raw `/`, another escape).
pub fn decode_id(segment: &str) -> Option<String> {
    let mut out = String::with_capacity(segment.len());
    let mut rest = segment;
    while let Some(i) = rest.find(['%', '/']) {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 3)?;
        match escape {
            "%25" => out.push('%'),
            "%2F" => out.push('/'),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

pub fn totals_key(scope: &Scope) -> String {
    format!(
        "{TOTALS_PREFIX}{}/{}",
        scope.kind.segment(),
        encode_id(&scope.id)
    )
}

/// Where a scope's day documents live, ending in `/`.
pub fn days_prefix(scope: &Scope) -> String {
    format!(
        "{DAYS_PREFIX}{}/{}/",
        scope.kind.segment(),
        encode_id(&scope.id)
    )
}

/// `day` is `YYYY-MM-DD`.
pub fn day_key(scope: &Scope, day: &str) -> String {
    format!("{}{day}", days_prefix(scope))
}

pub fn journal_key(node_id: &str) -> String {
    format!("{JOURNALS_PREFIX}{}", encode_id(node_id))
}

/// The scope a totals key is for.
pub fn scope_of_totals_key(key: &str) -> Option<Scope> {
    let rest = key.strip_prefix(TOTALS_PREFIX)?;
    let (kind, id) = rest.split_once('/')?;
    Some(Scope::new(ScopeKind::from_segment(kind)?, decode_id(id)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_encoded_unambiguously_and_reversibly() {
        for id in [
            "openai/*", "a%2Fb", "a/b/c", "%", "/", "plain", "", "é/%/ü", "%2",
        ] {
            let e = encode_id(id);
            assert!(!e.contains('/'), "{e}");
            assert_eq!(decode_id(&e).as_deref(), Some(id), "{id:?} via {e:?}");
        }
        // Ids that differ only by what the encoding writes stay distinct.
        assert_ne!(encode_id("a/b"), encode_id("a%2Fb"));
        for bad in ["a/b", "%", "%2", "%41", "x%2f"] {
            assert_eq!(decode_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_follow_the_layout() {
        let g = Scope::new(ScopeKind::ModelGroup, "openai/*");
        assert_eq!(
            totals_key(&g),
            "/sluice/usage/totals/model_group/openai%2F*"
        );
        assert_eq!(
            day_key(&g, "2026-12-02"),
            "/sluice/usage/days/model_group/openai%2F*/2026-12-02"
        );
        assert_eq!(
            totals_key(&Scope::new(ScopeKind::Team, "t1")),
            "/sluice/usage/totals/team/t1"
        );
        assert_eq!(journal_key("dp-1"), "/sluice/usage/journals/dp-1");
        assert_eq!(scope_of_totals_key(&totals_key(&g)), Some(g));
        assert_eq!(scope_of_totals_key("/sluice/usage/totals/nope/x"), None);
        assert_eq!(scope_of_totals_key("/sluice/usage/days/key/x"), None);
        for kind in ScopeKind::ALL {
            assert!(totals_key(&Scope::new(kind, "x")).starts_with(USAGE_PREFIX));
        }
    }
}
