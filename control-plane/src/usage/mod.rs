//! Usage metering, the control plane's side (DESIGN §7): data planes'
//! reports counted into the store exactly once, and the totals sent back to
//! every data plane for admission.
//!
//! - [`window`]: budget windows and UTC days, pure; the rule the data plane
//!   applies too.
//! - [`paths`]: where usage lives (`/sluice/usage/`), ids encoded so a key is
//!   unambiguous.
//! - [`ledger`]: the pure part: repeat / overlap / gap decisions, the fold of
//!   entries into totals and day documents.
//! - [`apply`]: [`Usage::apply`], one guarded transaction per report.
//! - [`totals`]: each replica's watched, in-memory totals ([`Totals`]),
//!   announced to its config streams.
//! - [`fault`]: the test hook that aborts between a report's commit and
//!   its ack.
//!
//! Usage lives under `/sluice/` but is never configuration: the hub skips
//! it (`distribution::hub`), and nothing of it is in a snapshot or delta.

pub mod apply;
pub mod fault;
pub mod ledger;
pub mod paths;
pub mod totals;
pub mod window;

pub use apply::{MAX_PUTS, Usage, UsageError};
pub use totals::{Announce, Totals};
pub use window::{Window, window_of};
