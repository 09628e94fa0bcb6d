//! The request path's first stages, over an inbound request and the current
//! [`Config`](crate::config::Config): who is calling ([`auth`]), what the
//! body asks for ([`parse`], for the [`Route`] called), and whether the caller may have it
//! ([`access`]).

pub mod access;
pub mod auth;
pub mod parse;
pub mod route;

pub use route::Route;
