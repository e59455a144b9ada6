//! `mailshift cutover`: DNS/MX readiness per mail domain and mail still arriving at the
//! source per account. Read-only on both servers (only the source INBOX is EXAMINEd and
//! searched); writes only its own observations under `[state] dir`. The decisions are in
//! [`crate::cutover`]; this wires DNS, the state files and the source together.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Timelike as _, Utc};
use futures::stream::{self, StreamExt};

use super::AccountError;
use crate::cli::{CutoverArgs, Format};
use crate::cutover::dns::{DnsError, MxResolver};
use crate::cutover::state::{self, StateError};
use crate::cutover::{
    decide_account, decide_domain, domain_of, verdict, AccountState, CutoverAccount, CutoverDomain,
    CutoverReport, DomainState, FinalPass, InboxNow, MAX_TTL,
};
use crate::diagnostics::HasHint;
use crate::imap::{ConnectionCaps, Credentials, ImapError, Reader};
use crate::model::{Side, WireName};
use crate::printer::Printer;
use crate::settings::{Account, Settings};
use crate::Outcome;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CutoverError {
    #[error("`[cutover] new-mx` is empty in `{config}`: cutover cannot tell a switched domain")]
    NoNewMx { config: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Dns(#[from] DnsError),
}

impl HasHint for CutoverError {
    fn hint(&self) -> Option<String> {
        match self {
            CutoverError::NoNewMx { .. } => Some(
                "add the new provider's MX host names, e.g.\n  [cutover]\n  new-mx = \
                 [\"mx1.new.example\", \"mx2.new.example\"]"
                    .to_string(),
            ),
            CutoverError::State(e) => e.hint(),
            CutoverError::Dns(e) => e.hint(),
        }
    }
}

pub(super) async fn run(
    settings: &Settings,
    args: &CutoverArgs,
    printer: &Printer,
) -> anyhow::Result<Outcome> {
    // Whole seconds, like INTERNALDATE: a message in the second the switch is first seen
    // counts as arriving after it.
    let now = Utc::now()
        .with_nanosecond(0)
        .expect("0 is a valid nanosecond");
    let report = check(settings, now).await?;
    match args.format {
        Format::Json => super::print_json(
            printer,
            &serde_json::to_string_pretty(&report).expect("plain data serializes"),
        ),
        Format::Text => super::print_text(printer, &crate::render::cutover::render(&report)),
    }
    Ok(match report.status {
        "done" => Outcome::Success,
        "waiting" => Outcome::ChangesPending,
        _ => Outcome::Failed,
    })
}

/// The whole check at `now`; an error only for what stops every domain (no `new-mx`, an
/// unreadable state, no DNS configuration).
pub(crate) async fn check(
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<CutoverReport, CutoverError> {
    let new_mx = &settings.cutover.new_mx;
    if new_mx.is_empty() {
        return Err(CutoverError::NoNewMx {
            config: settings.config_path.display().to_string(),
        });
    }
    let state_dir = &settings.state_dir;
    let mut memory = state::load_domains(state_dir)?;
    let passes = state::load_final_passes(state_dir)?;
    let resolver = MxResolver::new(&settings.cutover.nameservers)?;

    // Every mail domain of the selected accounts, destination first.
    let account_domains: Vec<Vec<String>> = settings
        .accounts
        .iter()
        .map(|a| {
            let mut ds: Vec<String> = Vec::new();
            for d in [domain_of(&a.destination_user), domain_of(&a.source_user)]
                .into_iter()
                .flatten()
            {
                if !ds.contains(&d) {
                    ds.push(d);
                }
            }
            ds
        })
        .collect();
    let domains: BTreeSet<&String> = account_domains.iter().flatten().collect();

    let lookups = futures::future::join_all(domains.iter().map(|d| resolver.lookup(d))).await;
    let mut domain_reports = Vec::new();
    let mut states: BTreeMap<String, Option<DomainState>> = BTreeMap::new();
    for (domain, result) in domains.iter().zip(lookups) {
        match result {
            Ok((observed, source)) => {
                let known = memory.get(*domain).cloned().unwrap_or_default();
                let (state, next) = decide_domain(now, &observed, new_mx, &known);
                memory.insert((*domain).clone(), next);
                let mut r = CutoverDomain::of(domain, &observed, new_mx, &state);
                r.ttl_source = Some(source.code());
                domain_reports.push(r);
                states.insert((*domain).clone(), Some(state));
            }
            Err(e) => {
                tracing::error!(%domain, "{e}");
                let error = AccountError::of(&e);
                domain_reports.push(CutoverDomain {
                    domain: (*domain).clone(),
                    error: Some(error.text),
                    hint: error.hint,
                    ..CutoverDomain::default()
                });
                states.insert((*domain).clone(), None);
            }
        }
    }
    state::save_domains(state_dir, &memory)?;

    let caps = ConnectionCaps::new(settings);
    let parallel = settings.limits.parallel_accounts.max(1);
    let checked: Vec<(CutoverAccount, Option<AccountState>)> =
        stream::iter(settings.accounts.iter().zip(&account_domains))
            .map(|(account, domains)| {
                let states = &states;
                let passes = &passes;
                let caps = &caps;
                async move { check_account(settings, account, domains, states, passes, caps).await }
            })
            .buffered(parallel)
            .collect()
            .await;

    let v = verdict(
        states.values().map(Option::as_ref),
        checked.iter().map(|(_, state)| state.as_ref()),
    );
    let accounts = checked.into_iter().map(|(report, _)| report).collect();
    Ok(CutoverReport {
        checked_at: now,
        new_mx: new_mx.clone(),
        max_ttl: MAX_TTL,
        domains: domain_reports,
        accounts,
        status: v.code(),
    })
}

async fn check_account(
    settings: &Settings,
    account: &Account,
    domains: &[String],
    states: &BTreeMap<String, Option<DomainState>>,
    passes: &BTreeMap<(String, String), FinalPass>,
    caps: &ConnectionCaps,
) -> (CutoverAccount, Option<AccountState>) {
    let mut report = CutoverAccount {
        source_user: account.source_user.clone(),
        destination_user: account.destination_user.clone(),
        domains: domains.to_vec(),
        ..CutoverAccount::default()
    };
    if domains.is_empty() {
        report.error = Some(format!(
            "neither `{}` nor `{}` has a mail domain",
            account.source_user, account.destination_user
        ));
        report.hint = Some(format!(
            "cutover takes the domains from the user names in `{}` line {}: use e-mail \
             addresses there",
            settings.csv_path.display(),
            account.line
        ));
        return (report, None);
    }
    // The account's mail all goes to the new server once its last domain has switched.
    let mut switched_at: Option<DateTime<Utc>> = None;
    for d in domains {
        match states.get(d) {
            Some(Some(state)) => match state.switched_at() {
                Some(at) => {
                    switched_at = Some(switched_at.map_or(at, |s: DateTime<Utc>| s.max(at)))
                }
                None => {
                    report.state = Some(AccountState::NotSwitched.code());
                    return (report, Some(AccountState::NotSwitched));
                }
            },
            // The domain's lookup failed: reported there; the account cannot be judged.
            _ => {
                report.error = Some(format!("the MX records of `{d}` are unknown"));
                return (report, None);
            }
        }
    }
    let switched_at = switched_at.expect("at least one domain");
    report.switched_at = Some(switched_at);
    let pass = passes.get(&state::pass_key(
        &settings.source.host,
        &account.source_user,
    ));
    report.last_final_pass = pass.map(|p| p.started_at);

    let _permit = caps.of(Side::Source).acquire().await.expect("never closed");
    match read_inbox(settings, account, switched_at, pass).await {
        Ok(inbox) => {
            report.arrived_after_switch = inbox.arrived_after_switch.len() as u32;
            report.last_arrival = inbox.arrived_after_switch.last().map(|(_, at)| *at);
            let state = decide_account(Some(switched_at), pass, &inbox);
            // Also for a pass before the switch: mail after it is not on the destination.
            report.since_last_final_pass = inbox.since_final_pass;
            report.state = Some(state.code());
            (report, Some(state))
        }
        Err(e) => {
            tracing::error!(account = %account.source_user, "{e}");
            let error = AccountError::of_imap(settings, account, Side::Source, &e, &e);
            report.error = Some(error.text);
            report.hint = error.hint;
            (report, None)
        }
    }
}

/// EXAMINE the source INBOX; what arrived after the switch and after the last pass.
async fn read_inbox(
    settings: &Settings,
    account: &Account,
    switched_at: DateTime<Utc>,
    pass: Option<&FinalPass>,
) -> Result<InboxNow, ImapError> {
    let mut reader = Reader::connect(
        &settings.source,
        &settings.limits,
        &Credentials::of(account, Side::Source),
    )
    .await?;
    let status = reader.examine(&WireName::inbox()).await?;
    let arrived = reader.arrived_after(switched_at).await?;
    let since_final_pass = match pass {
        Some(p) if p.inbox_uidvalidity == status.uidvalidity => {
            if status.uidnext == Some(p.inbox_uidnext) {
                Some(0)
            } else {
                Some(reader.uids_from(p.inbox_uidnext.max(1)).await?.len() as u32)
            }
        }
        _ => None,
    };
    reader.logout().await?;
    Ok(InboxNow {
        uidvalidity: status.uidvalidity,
        arrived_after_switch: arrived
            .into_iter()
            .map(|a| (a.uid, a.internal_date))
            .collect(),
        since_final_pass,
    })
}

/// An error and its causes on one line, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// After an `apply` that finished an account: remember the source INBOX it read (see
/// [`crate::cutover`]). `started_at` is when that plan began reading the servers.
pub(crate) fn record_final_pass(
    settings: &Settings,
    plan: &crate::plan::AccountPlan,
    started_at: DateTime<Utc>,
) {
    let inbox = plan
        .folders
        .iter()
        .flat_map(|f| &f.sources)
        .find(|s| s.wire_name.is_inbox());
    let Some(status) = inbox.and_then(|s| s.status) else {
        return;
    };
    let Some(uidnext) = status.uidnext else {
        return;
    };
    let pass = FinalPass {
        source_host: settings.source.host.clone(),
        source_user: plan.source_user.clone(),
        started_at,
        inbox_uidvalidity: status.uidvalidity,
        inbox_uidnext: uidnext,
    };
    if let Err(e) = state::record_final_pass(&settings.state_dir, &pass) {
        tracing::warn!(
            account = %plan.source_user,
            "{}; `cutover` will ask for another final pass",
            error_chain(&e)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_hints() {
        let e = CutoverError::NoNewMx {
            config: "migration.toml".into(),
        };
        assert!(!e.to_string().contains("hint"));
        assert!(e.hint().unwrap().contains("new-mx = ["));
        let e = CutoverError::Dns(DnsError::NoMx {
            domain: "x.example".into(),
        });
        assert!(e.hint().unwrap().contains("`x.example`"));
    }
}
