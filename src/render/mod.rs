//! Plan and report rendering: text for people, JSON for tools. The only place that
//! formats data for output.

pub mod check;
pub(crate) mod cutover;
pub(crate) mod fleet;
pub mod report;
pub mod text;
pub mod units;

#[cfg(test)]
mod snapshots;
