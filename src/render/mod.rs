//! Plan and report rendering: text for people, JSON for tools.

pub mod text;
pub mod units;
