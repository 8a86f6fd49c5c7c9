//! Sources: where jobs come from besides the HTTP API (`crate::api`, which feeds the same
//! [`Intake`](crate::pipeline::Intake)). Each parses once, at its edge.

pub mod kafka;
