//! What a command shows, as sinks it pushes into.
//!
//! The job and the commands push status transitions, the container's log lines, its
//! progress, their own notes and reports and the final document into a [`Renderer`],
//! which hands them to a [`Sink`]: the [`terminal`] (stdout and stderr, with a live
//! line on a terminal), [`json`] (stdout holds only the command's one document, every
//! line goes to stderr) and [`github`] (GitHub Actions' log groups and workflow
//! commands around another sink). Each knows only its own medium; none decides what
//! happened.

pub mod github;
mod json;
mod renderer;
pub(crate) mod sink;
mod terminal;

pub use self::renderer::Renderer;
