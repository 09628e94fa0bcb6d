//! Where a stored response lives: the Responses API keeps conversation
//! state upstream (`previous_response_id`, `GET /v1/responses/{id}`), in the
//! account that answered, so a request naming a response must reach a
//! deployment of that account.
//!
//! Each data plane remembers, for the responses that passed through it, the
//! [`Account`] (provider, `api_base`, `api_key`) that answered, in a map of
//! at most [`CAPACITY`] ids (the oldest forgotten first). A data plane that
//! never saw a response (another replica answered it, or it was restarted
//! or forgot it) routes among the group's deployments that keep state, and
//! an upstream that does not know the id says so itself (OpenAI answers 400
//! `previous_response_not_found`). Nothing here is sent anywhere.
//!
//! Sharded mutexes, taken once per Responses answer that passes through and
//! once per request that names a response: never on other requests.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use crate::config::snapshot::ResolvedDeployment;

/// How many response ids a data plane remembers.
pub const CAPACITY: usize = 100_000;

const SHARDS: usize = 16;

/// An upstream account: deployments with the same one share stored
/// responses. A hash, so the key it is made from is not kept twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Account(u64);

impl Account {
    pub fn of(deployment: &ResolvedDeployment) -> Account {
        let d = deployment.deployment();
        let secrets = deployment.secrets();
        let mut h = DefaultHasher::new();
        (
            d.provider.as_str(),
            sluice_proto::providers::split_model(&d.model).0,
        )
            .hash(&mut h);
        secrets
            .api_base
            .expose()
            .trim()
            .trim_end_matches('/')
            .hash(&mut h);
        secrets.api_key.expose().hash(&mut h);
        Account(h.finish())
    }
}

/// Where a response is stored, and whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Home {
    pub account: Account,
    /// A hash of the key that created it: only that key is routed to it or
    /// may retrieve it through this data plane.
    pub owner: u64,
}

/// The [`Home::owner`] of a key, by its id (the hash of the key).
pub fn owner(key_id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key_id.hash(&mut h);
    h.finish()
}

/// Response id → where it is stored.
pub struct Affinity {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

#[derive(Default)]
struct Shard {
    homes: HashMap<String, Home>,
    order: VecDeque<String>,
}

impl std::fmt::Debug for Affinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Affinity")
            .field("per_shard", &self.per_shard)
            .finish_non_exhaustive()
    }
}

impl Default for Affinity {
    fn default() -> Self {
        Affinity::with_capacity(CAPACITY)
    }
}

impl Affinity {
    pub fn with_capacity(capacity: usize) -> Self {
        Affinity {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, id: &str) -> &Mutex<Shard> {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }

    /// `id` was answered from `home`.
    pub fn remember(&self, id: &str, home: Home) {
        let mut shard = self.shard(id).lock().unwrap_or_else(|e| e.into_inner());
        if shard.homes.insert(id.to_owned(), home).is_none() {
            shard.order.push_back(id.to_owned());
        }
        while shard.order.len() > self.per_shard {
            if let Some(old) = shard.order.pop_front() {
                shard.homes.remove(&old);
            }
        }
    }

    /// The id of the `response` a pass-through answer carries, from its
    /// first bytes (a whole answer's object, or a stream's
    /// `response.created` event): the first `"id"` member whose value
    /// starts `resp_`. `None` while `start` does not show one.
    pub fn id_in(start: &[u8]) -> Option<&str> {
        let mut rest = start;
        while let Some(at) = find(rest, b"\"id\"") {
            rest = &rest[at + 4..];
            let after = trim(rest);
            let Some(value) = after.strip_prefix(b":") else {
                continue;
            };
            let value = trim(value);
            let Some(value) = value.strip_prefix(b"\"") else {
                continue;
            };
            let end = value.iter().position(|&b| b == b'"' || b == b'\\')?;
            let id = std::str::from_utf8(&value[..end]).ok()?;
            if id.starts_with("resp_") && value.get(end) == Some(&b'"') {
                return Some(id);
            }
        }
        None
    }

    /// Where `id` is stored, when this data plane saw it answered.
    pub fn home(&self, id: &str) -> Option<Home> {
        let shard = self.shard(id).lock().unwrap_or_else(|e| e.into_inner());
        shard.homes.get(id).copied()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_from_an_answer_or_a_stream_start() {
        let id = |s: &str| Affinity::id_in(s.as_bytes()).map(str::to_owned);
        assert_eq!(
            id(r#"{"id": "resp_67cc", "object": "response""#),
            Some("resp_67cc".into())
        );
        assert_eq!(
            id(
                "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\","
            ),
            Some("resp_1".into())
        );
        assert_eq!(
            id(r#"{"object":"response","id":"msg_1","x":{"id":"resp_2"}"#),
            Some("resp_2".into())
        );
        assert_eq!(id(r#"{"id":"resp_cut"#), None, "not yet whole");
        assert_eq!(id(r#"{"id":7}"#), None);
    }

    #[test]
    fn remembers_and_forgets_the_oldest_past_capacity() {
        let affinity = Affinity::with_capacity(SHARDS * 2);
        let home = |a| Home {
            account: Account(a),
            owner: owner("k"),
        };
        affinity.remember("resp_a", home(1));
        assert_eq!(affinity.home("resp_a"), Some(home(1)));
        assert_eq!(affinity.home("resp_b"), None);
        for i in 0..SHARDS * 10 {
            affinity.remember(&format!("resp_{i}"), home(2));
        }
        let kept = (0..SHARDS * 10)
            .filter(|i| affinity.home(&format!("resp_{i}")).is_some())
            .count();
        assert!(kept <= SHARDS * 2, "bounded: {kept}");
        assert!(
            affinity
                .home(&format!("resp_{}", SHARDS * 10 - 1))
                .is_some(),
            "the newest is kept"
        );
        assert_eq!(affinity.home("resp_a"), None, "the oldest is forgotten");
    }
}
