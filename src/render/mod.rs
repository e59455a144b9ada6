//! Plan and report rendering: text for people, JSON for tools. The only place that
//! formats data for output.

pub(crate) mod check;
pub(crate) mod cutover;
pub(crate) mod fleet;
pub(crate) mod report;
pub(crate) mod text;
pub(crate) mod units;

#[cfg(test)]
mod snapshots;
