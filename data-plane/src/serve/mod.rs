//! The serving machinery around the request path: a thread and runtime per
//! core ([`workers`]), stderr through one buffer ([`log_writer`]) and the
//! request line written directly ([`log_format`]), and malloc's settings
//! ([`allocator`]).

pub mod allocator;
pub mod log_format;
pub mod log_writer;
pub mod workers;
