//! The admin task definition: its template (built in, or a file), rendered strictly
//! and checked before ECS sees it ([`render`]), registered as a new revision
//! ([`register`]), and what the launcher reads back from a registered one ([`fetch`]).

pub mod fetch;
mod publish;
pub mod spec;
pub mod template;

pub(crate) use self::publish::load_template;
pub use self::publish::{register, render};
