//! One reconnecting session per side, under one retry policy. A [`SourceSession`] (over a
//! [`Reader`]) and a [`DestinationSession`] (over a [`Writer`]) own their connection:
//! when it drops (a cut, a stall caught by `idle-timeout`, `BYE`, a restarted server)
//! they log in again, open the folder again and retry the step — idempotent steps inside
//! [`SourceSession::run`] / [`DestinationSession::run`], everything else by the caller
//! after it has found out what arrived ([`DestinationSession::fail`]).
//!
//! The budget is about *no progress*, not about the number of failures: the caller says
//! when something moved forward ([`Backoff::progress`]) and only `budget` failures in a
//! row without progress give up. Waits grow exponentially with jitter up to a cap; a
//! server's own suggestion (`Suggested Backoff Time: N ms`) is honoured as given.
//! Permanent errors (a refused login, a TLS failure, a refused command) are not retried.

use std::time::{Duration, Instant};

use super::auth::Credentials;
use super::error::ImapError;
use super::reader::{BodiesOutcome, Piece, Reader};
use super::writer::{AppendItem, AppendResult, Created, SelectInfo, StreamedAppend, Writer};
use std::collections::HashMap;

use super::pipeline::MailboxStatus;
use crate::model::{FolderStatus, WireName};
use crate::settings::{Limits, ServerSettings};

/// Timeouts without progress before a session gives up (see [`RetryPolicy::stall_budget`]).
pub(super) const STALL_BUDGET: u32 = 3;

/// How failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure (then doubled per failure without progress).
    pub first: Duration,
    /// The longest wait between two attempts.
    pub cap: Duration,
    /// Failures in a row without progress before giving up.
    pub budget: u32,
    /// Timeouts (stalls caught by `idle-timeout`/`connect-timeout`) since the last progress
    /// before giving up: a server that never answers is not waited for `budget` times the
    /// timeout. Cuts do not count here, so a link that drops but moves on is never given up.
    pub stall_budget: u32,
}

impl RetryPolicy {
    /// Waits from 50 ms (a cut link is usually back at once) doubling up to 30 s (or `connect-timeout`, when shorter, but at
    /// least 1 s); sixteen failures in a row without progress give up, or three timeouts
    /// since the last progress (`STALL_BUDGET`). A server refusing
    /// connections is thus waited for about two to four minutes with the defaults.
    pub fn from_limits(limits: &Limits) -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_millis(50),
            cap: limits
                .connect_timeout
                .clamp(Duration::from_secs(1), Duration::from_secs(30)),
            budget: 16,
            stall_budget: STALL_BUDGET,
        }
    }

    /// The wait before attempt `failures + 1` (`failures` ≥ 1), before jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.first.saturating_mul(factor).min(self.cap)
    }
}

/// Whether an error is worth another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transience {
    /// Never retried: the same request gets the same answer.
    Permanent,
    /// Retried after a wait; `after` is the server's own suggestion when it gave one.
    Transient { after: Option<Duration> },
}

/// RFC 5530 codes that say "try again later".
const TEMPORARY_CODES: &[&str] = &["[UNAVAILABLE]", "[INUSE]", "[SERVERBUG]", "[LIMIT]"];

/// Classifies a server's words (a NO to a command or to one appended message).
/// `[LIMIT]` is temporary unless it is about the message's size (Dovecot answers
/// `[LIMIT] Mail size is larger than …`, which no retry changes).
pub fn classify_words(words: &str) -> Transience {
    let upper = words.to_ascii_uppercase();
    if let Some(after) = suggested_backoff(words) {
        return Transience::Transient { after: Some(after) };
    }
    if upper.contains("[OVERQUOTA]") || upper.contains("[AUTHENTICATIONFAILED]") {
        return Transience::Permanent;
    }
    if upper.contains("THROTTL") {
        return Transience::Transient { after: None };
    }
    for code in TEMPORARY_CODES {
        if upper.contains(code) {
            if *code == "[LIMIT]" && upper.contains("SIZE") {
                return Transience::Permanent;
            }
            return Transience::Transient { after: None };
        }
    }
    Transience::Permanent
}

/// `Request is throttled. Suggested Backoff Time: 1500 ms` (Microsoft 365) → 1.5 s.
pub fn suggested_backoff(words: &str) -> Option<Duration> {
    let lower = words.to_ascii_lowercase();
    let at = lower.find("backoff time")?;
    let rest = lower[at + "backoff time".len()..].trim_start_matches([':', ' ', '=']);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    let unit = rest[digits.len()..].trim_start();
    Some(if unit.starts_with("ms") || unit.starts_with("milli") {
        Duration::from_millis(n)
    } else if unit.starts_with('s') {
        Duration::from_secs(n)
    } else {
        Duration::from_millis(n)
    })
}

/// Classifies an error of the IMAP layer.
pub(super) fn classify(err: &ImapError) -> Transience {
    match err {
        ImapError::Closed { .. } | ImapError::Timeout { .. } => {
            Transience::Transient { after: None }
        }
        ImapError::ConnectFailed { reason, .. } => match reason {
            super::ConnectReason::UnknownHost(_) => Transience::Permanent,
            _ => Transience::Transient { after: None },
        },
        ImapError::Protocol { server_text, .. } => classify_words(server_text),
        // A login refused for a temporary reason (`[UNAVAILABLE]`) is retried.
        ImapError::AuthFailed { server_text, .. } => match classify_words(server_text) {
            t @ Transience::Transient { .. } if !server_text.contains("[AUTHENTICATIONFAILED]") => {
                t
            }
            _ => Transience::Permanent,
        },
        // A literal far bigger than the message or header it should hold: tried again on a
        // new connection (a body fetch that gets it for one message alone records that
        // message as failed instead, see `apply/folder.rs`).
        ImapError::Oversized { .. } => Transience::Transient { after: None },
        ImapError::TooLarge { .. }
        | ImapError::Tls { .. }
        | ImapError::StartTlsUnavailable { .. }
        | ImapError::PlaintextAuthRefused { .. }
        | ImapError::NoPassword { .. }
        | ImapError::TokenCommand { .. }
        | ImapError::IncompleteFetch { .. }
        | ImapError::Unparsable { .. } => Transience::Permanent,
    }
}

/// What retrying cost: counted in the report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RetryStats {
    /// Attempts repeated after a failure.
    pub retries: u64,
    /// New connections after the first one.
    pub reconnects: u64,
    /// Time spent waiting between attempts.
    pub waited: Duration,
}

impl RetryStats {
    pub fn add(&mut self, other: RetryStats) {
        self.retries += other.retries;
        self.reconnects += other.reconnects;
        self.waited += other.waited;
    }
}

/// The failure counter and the waits of one session.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    failures: u32,
    /// Timeouts since the last progress.
    stalls: u32,
    rng: u64,
    stats: RetryStats,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Backoff {
            policy,
            failures: 0,
            stalls: 0,
            rng: seed | 1,
            stats: RetryStats::default(),
        }
    }

    /// Something moved forward: the budget starts again.
    pub fn progress(&mut self) {
        self.failures = 0;
        self.stalls = 0;
    }

    /// Counts one timeout without progress; `false` once the stall budget is spent (then
    /// give up without waiting).
    pub fn stalled(&mut self) -> bool {
        self.stalls += 1;
        self.stalls < self.policy.stall_budget
    }

    /// Failures in a row without progress so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    pub fn stats(&self) -> RetryStats {
        self.stats
    }

    /// Counts one failure without progress and waits before the next attempt: the
    /// server's suggestion when given, else the policy's delay with jitter (half to all of
    /// it). `false` when the budget is spent (nothing is waited then).
    pub async fn failed(&mut self, suggested: Option<Duration>) -> bool {
        self.failures += 1;
        if self.failures > self.policy.budget {
            return false;
        }
        let wait = match suggested {
            Some(wait) => wait,
            None => {
                let full = self.policy.delay(self.failures);
                // xorshift64: jitter needs no cryptography.
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                let fraction = 0.5 + (self.rng % 1000) as f64 / 2000.0;
                full.mul_f64(fraction)
            }
        };
        self.stats.retries += 1;
        self.wait(wait).await;
        true
    }

    /// Waits and counts the time.
    pub async fn wait(&mut self, wait: Duration) {
        let started = Instant::now();
        tokio::time::sleep(wait).await;
        self.stats.waited += started.elapsed();
    }
}

/// Why a session gave up on a step.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// An error no retry can fix.
    #[error(transparent)]
    Permanent(ImapError),
    /// Transient failures went on without progress until the budget was spent.
    #[error("gave up after {attempts} attempts without progress")]
    GaveUp {
        attempts: u32,
        #[source]
        last: ImapError,
    },
    /// The folder was opened again and its UIDVALIDITY changed: its UIDs mean other
    /// messages now.
    #[error("folder `{folder}` changed UIDVALIDITY (was {was}, now {now})")]
    UidValidityChanged { folder: String, was: u32, now: u32 },
}

impl SessionError {
    /// The IMAP error behind it, if any.
    pub fn imap(&self) -> Option<&ImapError> {
        match self {
            SessionError::Permanent(e) | SessionError::GaveUp { last: e, .. } => Some(e),
            SessionError::UidValidityChanged { .. } => None,
        }
    }
}

/// Where a session's settings come from.
#[derive(Clone)]
pub struct SessionConfig {
    pub server: ServerSettings,
    pub limits: Limits,
    pub creds: Credentials,
}

/// Counts a failure and decides: wait and retry, or give up.
async fn retry_after(
    backoff: &mut Backoff,
    err: ImapError,
    what: &str,
    user: &str,
) -> Result<(), SessionError> {
    match classify(&err) {
        Transience::Permanent => Err(SessionError::Permanent(err)),
        Transience::Transient { after } => {
            let attempt = backoff.failures() + 1;
            let budget = backoff.policy().budget;
            if is_stall(&err) && !backoff.stalled() {
                // A server that never answers: each attempt costs a whole timeout, so
                // only a few are tried.
                return Err(SessionError::GaveUp {
                    attempts: attempt,
                    last: err,
                });
            }
            if attempt > budget {
                return Err(SessionError::GaveUp {
                    attempts: attempt,
                    last: err,
                });
            }
            tracing::warn!(account = %user, "{what}: {err}; retrying ({attempt}/{budget})");
            if backoff.failed(after).await {
                Ok(())
            } else {
                Err(SessionError::GaveUp {
                    attempts: attempt,
                    last: err,
                })
            }
        }
    }
}

/// The largest literal accepted for a body of at most `largest` bytes (as the plan says):
/// room for servers whose RFC822.SIZE is approximate, none for one announcing 100 MB.
fn body_limit(largest: u64) -> u64 {
    largest.saturating_mul(2).saturating_add(1 << 20)
}

/// A failure that cost a whole timeout: a TCP handshake that never completed, a greeting
/// or login that never came (`connect-timeout`), a command never answered or trickled
/// (`idle-timeout`). Counted against [`RetryPolicy::stall_budget`], so a server that
/// never answers is given up after about 3 × the timeout, not 16 ×.
fn is_stall(err: &ImapError) -> bool {
    matches!(
        err,
        ImapError::Timeout { .. }
            | ImapError::ConnectFailed {
                reason: super::ConnectReason::TimedOut(_),
                ..
            }
    )
}

/// A connection unused for longer than this is closed and a new one opened when it is
/// needed again: half of `idle-timeout`, at most 60 s. Servers log out idle sessions and
/// NAT routers and firewalls forget idle connections (often silently: the next command
/// then costs a whole `idle-timeout` before the loss is noticed); a lane that waits for
/// pacing, a server's suggested backoff or its other connection would otherwise meet a
/// dead connection after every long wait. Reopening costs a login and a SELECT/EXAMINE
/// once per long wait; a NOOP every so often would keep the connection but needs a task
/// beside every session that waits.
pub(super) fn keepalive_after(limits: &Limits) -> Duration {
    (limits.idle_timeout / 2).min(Duration::from_secs(60))
}

/// A refusal saying the folder does not exist (`[NONEXISTENT]`, `[TRYCREATE]`, Dovecot's
/// `Mailbox doesn't exist`).
fn is_missing_folder(err: &ImapError) -> bool {
    match err {
        ImapError::Protocol { server_text, .. } => {
            let upper = server_text.to_ascii_uppercase();
            upper.contains("[NONEXISTENT]")
                || upper.contains("[TRYCREATE]")
                || upper.contains("DOESN'T EXIST")
        }
        _ => false,
    }
}

/// The source side: a read-only connection that reopens itself and its folder.
pub struct SourceSession {
    endpoint: SessionConfig,
    reader: Option<Reader>,
    /// The examined folder and the UIDVALIDITY it had when first opened.
    folder: Option<(WireName, u32)>,
    /// The folder is open on the current connection.
    open: bool,
    connected_once: bool,
    /// When the connection last carried a command ([`keepalive_after`]).
    used: tokio::time::Instant,
    /// Connections closed because they were idle too long (not counted as reconnects).
    pub idle_closes: u64,
    pub backoff: Backoff,
}

impl SourceSession {
    pub fn new(endpoint: SessionConfig, policy: RetryPolicy) -> SourceSession {
        SourceSession {
            endpoint,
            reader: None,
            folder: None,
            open: false,
            connected_once: false,
            used: tokio::time::Instant::now(),
            idle_closes: 0,
            backoff: Backoff::new(policy),
        }
    }

    /// A live connection with the folder open (connecting and reopening as needed).
    async fn live(&mut self) -> Result<&mut Reader, SessionError> {
        let idle = self.used.elapsed();
        if self.reader.is_some() && idle > keepalive_after(&self.endpoint.limits) {
            // Idle too long: the server or a router may have dropped it silently.
            tracing::debug!(
                account = %self.endpoint.creds.user,
                "source connection unused for {:.1}s; opening a new one",
                idle.as_secs_f64()
            );
            if let Some(r) = self.reader.take() {
                r.close().await;
            }
            self.idle_closes += 1;
            self.connected_once = false;
        }
        self.live_inner().await?;
        self.used = tokio::time::Instant::now();
        Ok(self.reader.as_mut().expect("connected by live_inner"))
    }

    async fn live_inner(&mut self) -> Result<(), SessionError> {
        loop {
            if self.reader.is_none() {
                self.open = false;
                let e = &self.endpoint;
                match Reader::connect(&e.server, &e.limits, &e.creds).await {
                    Ok(r) => {
                        self.reader = Some(r);
                        if std::mem::replace(&mut self.connected_once, true) {
                            self.backoff.stats.reconnects += 1;
                        }
                    }
                    Err(err) => {
                        retry_after(&mut self.backoff, err, "source: connecting", &e.creds.user)
                            .await?;
                        continue;
                    }
                }
            }
            if let (false, Some((name, was))) = (self.open, self.folder.clone()) {
                let reader = self.reader.as_mut().expect("connected above");
                match reader.examine(&name).await {
                    Ok(status) if status.uidvalidity != was => {
                        return Err(SessionError::UidValidityChanged {
                            folder: name.as_str().to_string(),
                            was,
                            now: status.uidvalidity,
                        })
                    }
                    Ok(_) => self.open = true,
                    Err(err) => {
                        self.drop_if_dead(&err);
                        let user = self.endpoint.creds.user.clone();
                        retry_after(&mut self.backoff, err, "source: opening the folder", &user)
                            .await?;
                        continue;
                    }
                }
            }
            return Ok(());
        }
    }

    /// Connects now (retried), so that the login is done before the first command.
    pub async fn connect(&mut self) -> Result<(), SessionError> {
        self.live().await.map(|_| ())
    }

    fn drop_if_dead(&mut self, err: &ImapError) {
        if err.kills_session() {
            self.reader = None;
            self.open = false;
        }
    }

    /// Opens `wire_name` read-only (EXAMINE), retried; later reconnects open it again and
    /// check its UIDVALIDITY stays the same.
    pub async fn examine(&mut self, wire_name: &WireName) -> Result<FolderStatus, SessionError> {
        self.folder = None;
        self.open = false;
        loop {
            let reader = self.live().await?;
            match reader.examine(wire_name).await {
                Ok(status) => {
                    self.folder = Some((wire_name.clone(), status.uidvalidity));
                    self.open = true;
                    return Ok(status);
                }
                Err(err) => {
                    self.drop_if_dead(&err);
                    let user = self.endpoint.creds.user.clone();
                    retry_after(&mut self.backoff, err, "source: EXAMINE", &user).await?;
                }
            }
        }
    }

    /// Opens `wire_name` read-only and reads the bodies of `uids` in the same round trip
    /// ([`Reader::examine_fetch_bodies`]). The EXAMINE is retried like [`Self::examine`];
    /// the FETCH part is one attempt, returned as [`Self::fetch_bodies`] returns it.
    #[allow(clippy::type_complexity)]
    pub async fn examine_and_fetch(
        &mut self,
        wire_name: &WireName,
        uids: &[u32],
        largest: u64,
        mut on_body: impl FnMut(u32, Vec<u8>),
    ) -> Result<(FolderStatus, Result<BodiesOutcome, ImapError>), SessionError> {
        self.folder = None;
        self.open = false;
        loop {
            let reader = self.live().await?;
            let result = reader
                .expecting(
                    body_limit(largest),
                    "twice the largest size in the plan, and 1 MiB more",
                    async |r| r.examine_fetch_bodies(wire_name, uids, &mut on_body).await,
                )
                .await;
            self.used = tokio::time::Instant::now();
            let err = match result {
                Ok((Ok(status), fetched)) => {
                    self.folder = Some((wire_name.clone(), status.uidvalidity));
                    self.open = true;
                    if let Err(err) = &fetched {
                        self.drop_if_dead(err);
                    }
                    return Ok((status, fetched));
                }
                Ok((Err(err), _)) => err,
                Err(err) => {
                    // The round failed as a whole (a cut, a stall, an answer too big for a
                    // pipeline): the folder is opened on its own and the FETCH counts as
                    // failed, for the caller to settle as any failed FETCH (fewer messages
                    // at a time, through the streaming reader).
                    self.drop_if_dead(&err);
                    let status = self.examine(wire_name).await?;
                    return Ok((status, Err(err)));
                }
            };
            self.drop_if_dead(&err);
            let user = self.endpoint.creds.user.clone();
            retry_after(&mut self.backoff, err, "source: EXAMINE", &user).await?;
        }
    }

    /// `STATUS` of every folder in one pipelined round (retried as a whole); a folder the
    /// server refuses STATUS for is left out.
    pub async fn statuses(
        &mut self,
        wire_names: &[WireName],
    ) -> Result<HashMap<WireName, MailboxStatus>, SessionError> {
        loop {
            let reader = self.live().await?;
            match reader.statuses(wire_names).await {
                Ok(found) => return Ok(found),
                Err(err) => self.fail(err, "source: STATUS").await?,
            }
        }
    }

    /// One attempt at `UID FETCH … BODY.PEEK[]` in the open folder (connecting and
    /// reopening first as needed, which is retried). Bodies are handed over as they
    /// arrive, so a cut keeps what came before it. A failure is returned as is (the
    /// connection is dropped when dead): the caller decides, then calls [`Self::fail`].
    ///
    /// `largest` is the biggest of these messages' sizes in the plan: a literal announced
    /// far bigger (twice that and 1 MiB more) is refused before it is buffered
    /// ([`ImapError::Oversized`]), so a server announcing 100 MB for a 2 KB message costs
    /// no memory.
    pub async fn fetch_bodies(
        &mut self,
        uids: &[u32],
        largest: u64,
        on_body: impl FnMut(u32, Vec<u8>),
    ) -> Result<Result<BodiesOutcome, ImapError>, SessionError> {
        let reader = self.live().await?;
        let result = reader
            .expecting(
                body_limit(largest),
                "twice the largest size in the plan, and 1 MiB more",
                async |r| r.fetch_bodies(uids, on_body).await,
            )
            .await;
        self.used = tokio::time::Instant::now();
        if let Err(err) = &result {
            self.drop_if_dead(err);
            if self.reader.is_none() && self.folder.is_some() {
                // A server that finds the folder recreated under it says BYE (Dovecot:
                // `IMAP session state is inconsistent`): open it again now, so that a
                // changed UIDVALIDITY stops the folder before what came is used.
                self.live().await?;
            }
            return Ok(result);
        }
        // No STATUS of the open folder after each fetch: UIDs may not change within a
        // session (RFC 3501 §2.3.1.1), so a server that recreates the folder under it ends the
        // session (Dovecot: `BYE IMAP session state is inconsistent`), and the reopen above
        // compares UIDVALIDITY. The STATUS cost 12% of the loopback copy (BENCHMARKS.md).
        Ok(result)
    }

    /// One attempt at reading one piece of a big message in the open folder
    /// ([`Reader::fetch_piece`]; connecting and reopening first as needed, which is
    /// retried). A failure is returned as is, as [`Self::fetch_bodies`].
    pub async fn fetch_piece(
        &mut self,
        uid: u32,
        offset: u64,
        len: u64,
    ) -> Result<Result<Option<Piece>, ImapError>, SessionError> {
        let reader = self.live().await?;
        let result = reader
            .expecting(
                body_limit(len),
                "twice the piece asked for, and 1 MiB more",
                async |r| r.fetch_piece(uid, offset, len).await,
            )
            .await;
        self.used = tokio::time::Instant::now();
        if let Err(err) = &result {
            self.drop_if_dead(err);
        }
        Ok(result)
    }

    /// A failed attempt of the caller's: counts it, waits, or gives up. The step that
    /// returned `err` has already dropped its connection when the error killed it, and may
    /// have opened a new one since (a FETCH cut mid-answer reopens the folder at once to
    /// check its UIDVALIDITY): that one is not dropped here. Dropping it cost a second login
    /// and EXAMINE per cut (the report counted two reconnects for each).
    pub async fn fail(&mut self, err: ImapError, what: &str) -> Result<(), SessionError> {
        let user = self.endpoint.creds.user.clone();
        retry_after(&mut self.backoff, err, what, &user).await
    }

    /// Says goodbye without waiting for the answer ([`Reader::close`]).
    pub async fn logout(self) {
        if let Some(r) = self.reader {
            r.close().await;
        }
    }
}

/// The destination side: the only writer, reconnecting and reselecting its folder.
pub struct DestinationSession {
    endpoint: SessionConfig,
    writer: Option<Writer>,
    /// The selected folder, selected again after a reconnect.
    folder: Option<WireName>,
    open: bool,
    connected_once: bool,
    /// What the last SELECT said (also after a reconnect).
    last_select: Option<SelectInfo>,
    /// When the connection last carried a command ([`keepalive_after`]).
    used: tokio::time::Instant,
    /// Connections closed because they were idle too long (not counted as reconnects).
    pub idle_closes: u64,
    /// Folders that disappeared during the run and were made again, in order.
    recreated: Vec<WireName>,
    pub backoff: Backoff,
}

impl DestinationSession {
    pub fn new(endpoint: SessionConfig, policy: RetryPolicy) -> DestinationSession {
        DestinationSession {
            endpoint,
            writer: None,
            folder: None,
            open: false,
            connected_once: false,
            last_select: None,
            used: tokio::time::Instant::now(),
            idle_closes: 0,
            recreated: Vec::new(),
            backoff: Backoff::new(policy),
        }
    }

    /// The folders that disappeared during the run and were made again (each once).
    pub fn recreated(&self) -> &[WireName] {
        &self.recreated
    }

    /// Connects now (retried), so that a destination that cannot be reached fails early.
    pub async fn connect(&mut self) -> Result<(), SessionError> {
        self.live().await.map(|_| ())
    }

    async fn live(&mut self) -> Result<&mut Writer, SessionError> {
        let idle = self.used.elapsed();
        if self.writer.is_some() && idle > keepalive_after(&self.endpoint.limits) {
            // Idle too long: the server or a router may have dropped it silently.
            tracing::debug!(
                account = %self.endpoint.creds.user,
                "destination connection unused for {:.1}s; opening a new one",
                idle.as_secs_f64()
            );
            if let Some(w) = self.writer.take() {
                w.close().await;
            }
            self.idle_closes += 1;
            self.connected_once = false;
        }
        self.live_inner().await?;
        self.used = tokio::time::Instant::now();
        Ok(self.writer.as_mut().expect("connected by live_inner"))
    }

    async fn live_inner(&mut self) -> Result<(), SessionError> {
        let mut recreated = false;
        loop {
            if self.writer.is_none() {
                self.open = false;
                let e = &self.endpoint;
                match Writer::connect(&e.server, &e.limits, &e.creds).await {
                    Ok(w) => {
                        self.writer = Some(w);
                        if std::mem::replace(&mut self.connected_once, true) {
                            self.backoff.stats.reconnects += 1;
                        }
                    }
                    Err(err) => {
                        retry_after(
                            &mut self.backoff,
                            err,
                            "destination: connecting",
                            &e.creds.user,
                        )
                        .await?;
                        continue;
                    }
                }
            }
            if let (false, Some(name)) = (self.open, self.folder.clone()) {
                let writer = self.writer.as_mut().expect("connected above");
                match writer.select(&name).await {
                    Ok(sel) => {
                        self.last_select = Some(sel);
                        self.open = true;
                    }
                    Err(err) if !recreated && is_missing_folder(&err) => {
                        // Deleted on the destination during the run: made again (what was
                        // copied into it before is gone with it; a re-run copies it again).
                        recreated = true;
                        if !self.recreated.contains(&name) {
                            self.recreated.push(name.clone());
                        }
                        tracing::warn!(
                            account = %self.endpoint.creds.user,
                            "destination folder `{}` disappeared during the run; creating it again",
                            name.as_str()
                        );
                        if let Err(err) = writer.create(&name).await {
                            self.drop_if_dead(&err);
                            let user = self.endpoint.creds.user.clone();
                            retry_after(&mut self.backoff, err, "destination: CREATE", &user)
                                .await?;
                        }
                        continue;
                    }
                    Err(err) => {
                        self.drop_if_dead(&err);
                        let user = self.endpoint.creds.user.clone();
                        retry_after(
                            &mut self.backoff,
                            err,
                            "destination: selecting the folder",
                            &user,
                        )
                        .await?;
                        continue;
                    }
                }
            }
            return Ok(());
        }
    }

    fn drop_if_dead(&mut self, err: &ImapError) {
        if err.kills_session() {
            self.writer = None;
            self.open = false;
        }
    }

    /// What the last SELECT said (refreshed by every reconnect).
    pub fn last_select(&self) -> Option<&SelectInfo> {
        self.last_select.as_ref()
    }

    /// Selects `wire_name` (retried); later reconnects select it again.
    pub async fn select(&mut self, wire_name: &WireName) -> Result<SelectInfo, SessionError> {
        self.folder = Some(wire_name.clone());
        self.open = false;
        self.live().await?;
        Ok(self.last_select.clone().expect("selected above"))
    }

    /// `CREATE` (retried: a folder that exists already is a success).
    pub async fn create(&mut self, wire_name: &WireName) -> Result<Created, SessionError> {
        let mut first = true;
        loop {
            let writer = self.live().await?;
            match writer.create(wire_name).await {
                // A retried CREATE may find the folder its lost first attempt made.
                Ok(Created::AlreadyThere) if !first => return Ok(Created::New),
                Ok(c) => return Ok(c),
                Err(err) => {
                    first = false;
                    self.fail(err, "destination: CREATE").await?
                }
            }
        }
    }

    /// `CREATE` of every folder in one pipelined round ([`Writer::create_all`]). A lost
    /// connection, or a temporary refusal, sends again what has no success yet (a folder
    /// that exists then was made by the lost round: it counts as new). Per folder: created,
    /// or the refusal that retrying cannot cure.
    pub async fn create_all(
        &mut self,
        wire_names: &[WireName],
    ) -> Result<Vec<Result<Created, ImapError>>, SessionError> {
        let mut first = true;
        self.pipelined_rounds(wire_names, "destination: CREATE", |writer, names| {
            let retried = !std::mem::replace(&mut first, false);
            Box::pin(async move {
                let results = writer.create_all(names).await?;
                Ok(results
                    .into_iter()
                    .map(|r| match r {
                        Ok(Created::AlreadyThere) if retried => Ok(Created::New),
                        other => other,
                    })
                    .collect())
            })
        })
        .await
    }

    /// `SUBSCRIBE` of every folder in one pipelined round (retried like
    /// [`Self::create_all`]; subscribing twice is harmless).
    pub async fn subscribe_all(
        &mut self,
        wire_names: &[WireName],
    ) -> Result<Vec<Result<(), ImapError>>, SessionError> {
        self.pipelined_rounds(wire_names, "destination: SUBSCRIBE", |writer, names| {
            Box::pin(writer.subscribe_all(names))
        })
        .await
    }

    /// Runs `round` over the folders that have no success yet until every folder has a
    /// success or a refusal no retry changes; connection losses and temporary refusals
    /// count against the retry budget.
    async fn pipelined_rounds<T>(
        &mut self,
        wire_names: &[WireName],
        what: &str,
        mut round: impl for<'w> FnMut(
            &'w mut Writer,
            &'w [WireName],
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<Vec<Result<T, ImapError>>, ImapError>>
                    + Send
                    + 'w,
            >,
        >,
    ) -> Result<Vec<Result<T, ImapError>>, SessionError> {
        let mut done: Vec<Option<Result<T, ImapError>>> =
            (0..wire_names.len()).map(|_| None).collect();
        loop {
            let todo: Vec<usize> = (0..wire_names.len())
                .filter(|i| done[*i].is_none())
                .collect();
            if todo.is_empty() {
                break;
            }
            let names: Vec<WireName> = todo.iter().map(|i| wire_names[*i].clone()).collect();
            let writer = self.live().await?;
            let err = match round(writer, &names).await {
                Ok(results) => {
                    let mut transient = None;
                    for (i, result) in todo.into_iter().zip(results) {
                        match result {
                            Err(e) if classify(&e) != Transience::Permanent => {
                                transient.get_or_insert(e);
                            }
                            other => done[i] = Some(other),
                        }
                    }
                    match transient {
                        None => break,
                        Some(e) => e,
                    }
                }
                Err(err) => err,
            };
            self.fail(err, what).await?;
        }
        Ok(done
            .into_iter()
            .map(|d| d.expect("every folder answered"))
            .collect())
    }

    /// `SUBSCRIBE` (retried).
    pub async fn subscribe(&mut self, wire_name: &WireName) -> Result<(), SessionError> {
        loop {
            let writer = self.live().await?;
            match writer.subscribe(wire_name).await {
                Ok(()) => return Ok(()),
                Err(err) => self.fail(err, "destination: SUBSCRIBE").await?,
            }
        }
    }

    /// `UID STORE +FLAGS.SILENT` in the selected folder (retried: adding is idempotent).
    /// A permanent refusal is `Ok(Err(the server's words))`.
    pub async fn add_flags(
        &mut self,
        uids: &[u32],
        flags: &[String],
    ) -> Result<Result<(), String>, SessionError> {
        loop {
            let writer = self.live().await?;
            match writer.add_flags(uids, flags).await {
                Ok(done) => return Ok(done),
                Err(err) => self.fail(err, "destination: UID STORE").await?,
            }
        }
    }

    /// The metadata of every message with UID ≥ `first_uid` in the selected folder
    /// (retried; a retry starts the list again).
    pub async fn fetch_metadata_since(
        &mut self,
        first_uid: u32,
        mut on_message: impl FnMut(super::FetchedMeta),
    ) -> Result<(), SessionError> {
        loop {
            let mut got = Vec::new();
            let writer = self.live().await?;
            let fetched = writer
                .fetch_metadata_since(first_uid, |m| got.push(m))
                .await;
            self.used = tokio::time::Instant::now();
            match fetched {
                Ok(()) => {
                    got.into_iter().for_each(&mut on_message);
                    return Ok(());
                }
                Err(err) => self.fail(err, "destination: UID FETCH (metadata)").await?,
            }
        }
    }

    /// The metadata of every message with UID ≥ `first_uid` in the selected folder, then
    /// `SELECT next`, in one pipelined round ([`Writer::fetch_since_then_select`]); both
    /// retried (a retry reselects the first folder and starts the list again). A refused
    /// SELECT is left to [`Self::select`] (which makes a vanished folder again).
    pub async fn fetch_since_then_select(
        &mut self,
        first_uid: u32,
        next: &WireName,
        mut on_message: impl FnMut(super::FetchedMeta),
    ) -> Result<SelectInfo, SessionError> {
        loop {
            let mut got = Vec::new();
            let writer = self.live().await?;
            let result = writer
                .fetch_since_then_select(first_uid, next, |m| got.push(m))
                .await;
            self.used = tokio::time::Instant::now();
            match result {
                Ok(selected) => {
                    got.into_iter().for_each(&mut on_message);
                    return match selected {
                        Ok(sel) => {
                            self.folder = Some(next.clone());
                            self.open = true;
                            self.last_select = Some(sel.clone());
                            Ok(sel)
                        }
                        Err(_) => self.select(next).await,
                    };
                }
                Err(err) => {
                    self.fail(err, "destination: UID FETCH (metadata) + SELECT")
                        .await?
                }
            }
        }
    }

    /// One attempt at appending `items` (connecting and reselecting first as needed,
    /// which is retried). A failure is returned as is: what reached the server is
    /// unknown, so the caller finds out before it calls [`Self::fail`] and tries again.
    pub async fn append_batch(
        &mut self,
        wire_name: &WireName,
        items: &[AppendItem<'_>],
    ) -> Result<Result<Vec<AppendResult>, ImapError>, SessionError> {
        let writer = self.live().await?;
        let result = writer.append_batch(wire_name, items).await;
        self.used = tokio::time::Instant::now();
        if let Err(err) = &result {
            self.drop_if_dead(err);
        }
        Ok(result)
    }

    /// One attempt at appending `items` to `wire_name` with `SELECT next` written behind
    /// the APPEND ([`Writer::append_batch_then_select`]): the next folder is selected in
    /// the same round trip. `true` beside the results when `next` is selected now (later
    /// reconnects select it again); `false` when only the SELECT failed (the APPEND was
    /// answered; the folder appended to is selected again by the next step that needs
    /// it). A failure is returned as [`Self::append_batch`] returns it, and then the folder
    /// appended to is still the session's folder (what arrived is looked up there).
    pub async fn append_batch_then_select(
        &mut self,
        wire_name: &WireName,
        items: &[AppendItem<'_>],
        next: &WireName,
    ) -> Result<Result<(Vec<AppendResult>, bool), ImapError>, SessionError> {
        let writer = self.live().await?;
        let result = writer
            .append_batch_then_select(wire_name, items, next)
            .await;
        self.used = tokio::time::Instant::now();
        Ok(match result {
            Err(err) => {
                self.drop_if_dead(&err);
                Err(err)
            }
            Ok((appended, Ok(sel))) => {
                self.folder = Some(next.clone());
                self.open = true;
                self.last_select = Some(sel);
                Ok((appended, true))
            }
            Ok((appended, Err(err))) => {
                self.drop_if_dead(&err);
                self.open = false;
                Ok((appended, false))
            }
        })
    }

    /// The folder this session has selected, or selects again on its next step.
    pub fn folder(&self) -> Option<&WireName> {
        self.folder.as_ref()
    }

    /// One attempt at starting a streamed APPEND of one message of `size` bytes
    /// ([`Writer::begin_append`]; connecting and reselecting first as needed, which is
    /// retried). `Ok(Ok(Err(words)))` when the server refused the message. The stream owns
    /// the connection until [`Self::finish_append`]; dropped, it closes the connection and
    /// the next step reconnects.
    pub async fn begin_append(
        &mut self,
        wire_name: &WireName,
        flags: &[String],
        internal_date: Option<&str>,
        size: u64,
    ) -> Result<Result<Result<StreamedAppend, String>, ImapError>, SessionError> {
        self.live().await?;
        let writer = self.writer.take().expect("live() connected");
        match writer
            .begin_append(wire_name, flags, internal_date, size)
            .await
        {
            Ok(Ok(stream)) => Ok(Ok(Ok(stream))),
            Ok(Err((writer, words))) => {
                self.writer = Some(writer);
                Ok(Ok(Err(words)))
            }
            // The writer is gone with its connection: the next step reconnects.
            Err(err) => Ok(Err(err)),
        }
    }

    /// Ends a streamed APPEND and takes its connection back when it is still usable. A
    /// failure is returned as is: whether the message arrived is unknown, so the caller
    /// looks before it calls [`Self::fail`] and tries again.
    pub async fn finish_append(
        &mut self,
        stream: StreamedAppend,
    ) -> Result<AppendResult, ImapError> {
        let (writer, result) = stream.finish().await;
        self.writer = writer;
        self.used = tokio::time::Instant::now();
        result
    }

    /// A failed attempt of the caller's: counts it, waits, or gives up.
    pub async fn fail(&mut self, err: ImapError, what: &str) -> Result<(), SessionError> {
        self.drop_if_dead(&err);
        let user = self.endpoint.creds.user.clone();
        retry_after(&mut self.backoff, err, what, &user).await
    }

    /// Says goodbye without waiting for the answer ([`Writer::close`]).
    pub async fn logout(self) {
        if let Some(w) = self.writer {
            w.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_text_gives_the_suggested_wait() {
        assert_eq!(
            suggested_backoff("Request is throttled. Suggested Backoff Time: 1500 ms"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            suggested_backoff("throttled; suggested backoff time: 2 s"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(suggested_backoff("[LIMIT] too many"), None);
        assert_eq!(
            classify_words("Request is throttled. Suggested Backoff Time: 250 ms"),
            Transience::Transient {
                after: Some(Duration::from_millis(250))
            }
        );
    }

    #[test]
    fn codes_are_temporary_or_permanent() {
        let t = Transience::Transient { after: None };
        assert_eq!(classify_words("[UNAVAILABLE] try later"), t);
        assert_eq!(classify_words("[INUSE] mailbox locked"), t);
        assert_eq!(classify_words("[SERVERBUG] oops"), t);
        assert_eq!(classify_words("[LIMIT] too many connections"), t);
        assert_eq!(
            classify_words("[LIMIT] Mail size is larger than the maximum size allowed"),
            Transience::Permanent
        );
        assert_eq!(classify_words("[OVERQUOTA] full"), Transience::Permanent);
        assert_eq!(
            classify_words("Message contains NUL"),
            Transience::Permanent
        );
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy {
            first: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            budget: 5,
            stall_budget: 3,
        };
        let d: Vec<u128> = (1..=6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[tokio::test]
    async fn the_budget_counts_failures_without_progress_only() {
        let mut b = Backoff::new(RetryPolicy {
            first: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            budget: 2,
            stall_budget: 3,
        });
        for _ in 0..10 {
            assert!(b.failed(None).await);
            b.progress();
        }
        assert!(b.failed(None).await);
        assert!(b.failed(None).await);
        assert!(!b.failed(None).await, "a third failure in a row gives up");
        assert_eq!(b.stats().retries, 12);
    }

    fn timeout() -> ImapError {
        ImapError::Timeout {
            host: "h".into(),
            port: 1,
            doing: "reading".into(),
            after: Duration::from_millis(1),
        }
    }

    #[test]
    fn idle_connections_are_replaced_after_half_the_idle_timeout_at_most_a_minute() {
        let mut limits = crate::settings::Limits {
            parallel_accounts: 1,
            connections_per_account: 1,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            pacing: Default::default(),
            stream_above: 8 << 20,
        };
        assert_eq!(keepalive_after(&limits), Duration::from_secs(60));
        limits.idle_timeout = Duration::from_secs(600);
        assert_eq!(keepalive_after(&limits), Duration::from_secs(60));
        limits.idle_timeout = Duration::from_secs(2);
        assert_eq!(keepalive_after(&limits), Duration::from_secs(1));
    }

    #[test]
    fn connect_timeouts_are_stalls_refusals_are_not() {
        let connect = |reason| ImapError::ConnectFailed {
            host: "h".into(),
            port: 1,
            reason,
        };
        assert!(is_stall(&timeout()));
        assert!(is_stall(&connect(super::super::ConnectReason::TimedOut(
            Duration::from_secs(1)
        ))));
        assert!(!is_stall(&connect(super::super::ConnectReason::Refused)));
    }

    #[tokio::test]
    async fn timeouts_without_progress_give_up_after_the_stall_budget() {
        let mut b = Backoff::new(RetryPolicy {
            first: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            budget: 16,
            stall_budget: 3,
        });
        // Cuts in between do not reset the stall count; progress does.
        retry_after(&mut b, timeout(), "x", "u").await.unwrap();
        b.progress();
        retry_after(&mut b, timeout(), "x", "u").await.unwrap();
        retry_after(&mut b, timeout(), "x", "u").await.unwrap();
        let closed = ImapError::Closed {
            host: "h".into(),
            port: 1,
            reason: "cut".into(),
        };
        retry_after(&mut b, closed, "x", "u").await.unwrap();
        match retry_after(&mut b, timeout(), "x", "u").await {
            Err(SessionError::GaveUp { attempts, .. }) => assert_eq!(attempts, 4),
            other => panic!("{other:?}"),
        }
    }
}
