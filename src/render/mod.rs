//! Plan and report rendering: text for people, JSON for tools.

pub(crate) mod fleet;
pub mod text;
pub mod units;
