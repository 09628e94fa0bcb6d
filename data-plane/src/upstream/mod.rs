//! The upstream leg below [`crate::forward`]: the pooled HTTP client
//! ([`client`]), the deadline every exchange runs under ([`deadline`]), and
//! why a call failed ([`error`]).
//!
//! Nothing here retries: one call is one exchange (DESIGN §5: nothing below
//! the router retries on its own).

pub mod client;
pub mod deadline;
pub mod error;

pub use client::{InitError, Tls, Upstream};
pub use error::UpstreamError;
