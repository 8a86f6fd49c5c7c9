//! Sources: where jobs come from. Each parses once, at its edge, and hands jobs to the
//! pipeline's [`Intake`](crate::pipeline::Intake). The admin API is served by the same
//! listener as ingest, so it lives here too.

pub mod admin;
pub mod http;
pub(crate) mod items;
pub mod kafka;
pub mod listener;
