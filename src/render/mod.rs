//! Plan and report rendering: text for people, JSON for tools.

pub(crate) mod cutover;
pub mod text;
pub mod units;
