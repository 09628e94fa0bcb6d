//! How a config arrives and is held: the stream client ([`discovery`]), the
//! protocol's messages ([`wire`]), the immutable, indexed [`Config`]
//! ([`snapshot`], with its key index, [`keys`], and provider secrets,
//! [`secrets`]), the current value behind an `arc-swap` ([`applied`]), and
//! the last one on disk ([`cache`]).
//!
//! Nothing here is on the request path, and nothing here imports it: the
//! request path reads a [`Config`] and never writes one.

pub mod applied;
pub mod cache;
pub mod discovery;
pub mod keys;
pub mod secrets;
pub mod snapshot;
pub mod wire;

pub use snapshot::Config;
