//! Sources: where jobs come from. Each parses once, at its edge, and hands jobs to the
//! pipeline's [`Intake`](crate::pipeline::Intake).

pub mod http;
pub mod kafka;
