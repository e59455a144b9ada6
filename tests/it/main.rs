//! The one integration test binary: every behaviour test runs against real Dovecot
//! instances started by `support` (see tests/support/mod.rs). Add modules below.

#[path = "../support/mod.rs"]
mod support;

mod admin_cli;
mod after_cutover;
mod apply_cli;
mod big_message;
mod check_cli;
mod consistency;
mod cutover_cli;
mod deploy_kubernetes;
mod errors_cli;
mod extras_cli;
mod flags_cli;
mod fleet_cli;
mod hardening_cli;
mod hostile;
mod hostile_destination;
mod identity_cli;
mod imap_layer;
mod imap_writer;
mod inventory_cache;
mod man_cli;
mod mapping_cli;
mod oauth_cli;
mod output_cli;
mod pacing_cli;
mod pipelining;
mod plan_cli;
mod reliability;
mod robustness;
mod rules_cli;
mod scenario;
mod shard_sim;
mod smoke;
mod stall_budget;
