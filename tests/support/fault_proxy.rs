//! A fault-injecting TCP proxy for robustness tests: it sits on a loopback port in front of
//! a real server (a Dovecot) and forwards bytes both ways until its [`Fault`] fires, then
//! cuts the connection (both directions) or stalls it (forwards nothing more, keeps the
//! sockets open, so only an idle timeout gets the client out).
//!
//! ```ignore
//! // Cut the first connection that has sent 600 kB to the server; later ones are fine.
//! let proxy = FaultProxy::to(dc.port())
//!     .fault(Fault::cut_after(Direction::ClientToServer, 600_000).times(1))
//!     .start();
//! scenario.set_port(Side::Destination, proxy.port());
//! // ... run the code under test ...
//! assert_eq!(proxy.fired(), 1, "the fault never happened: the test proved nothing");
//! ```
//!
//! Plain std threads, two per connection; everything is torn down on drop.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Which way bytes flow through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    ClientToServer,
    ServerToClient,
}

/// What a fault does once it fires on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultAction {
    /// Shut down both sockets of the connection (the client reads EOF / gets a reset).
    Cut,
    /// Forward nothing more in either direction, keep both sockets open.
    Stall,
    /// Send these bytes instead of the line holding the trigger, then stall (e.g. a
    /// FETCH response announcing a literal far bigger than the client can hold).
    Replace(&'static [u8]),
}

/// When a fault fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Once this connection has carried this many bytes in the fault's direction: exactly
    /// that many are forwarded, the rest is not.
    AfterBytes(u64),
    /// Like `AfterBytes`, with a limit drawn per connection from `min..max` by a generator
    /// seeded with `seed` and the connection's number (a reproducible flaky link).
    RandomBytes { min: u64, max: u64, seed: u64 },
    /// At the `occurrence`-th time (1-based, counted over all connections; 0 = every time)
    /// `pattern` is seen in the fault's direction: the line holding it is not forwarded
    /// (bytes before that line are). Patterns are matched within one line.
    AtPattern { pattern: Vec<u8>, occurrence: usize },
}

/// One fault: direction, trigger, action, and on how many connections it may fire.
#[derive(Clone, Debug)]
pub(crate) struct Fault {
    pub direction: Direction,
    pub trigger: Trigger,
    pub action: FaultAction,
    /// Fire on at most this many connections (the first ones to reach the trigger);
    /// `None`: on every connection that reaches it.
    pub times: Option<usize>,
}

impl Fault {
    /// Cut a connection once it has carried `bytes` in `direction`.
    pub(crate) fn cut_after(direction: Direction, bytes: u64) -> Fault {
        Fault {
            direction,
            trigger: Trigger::AfterBytes(bytes),
            action: FaultAction::Cut,
            times: None,
        }
    }

    /// Stall a connection once it has carried `bytes` in `direction`.
    pub(crate) fn stall_after(direction: Direction, bytes: u64) -> Fault {
        Fault {
            action: FaultAction::Stall,
            ..Fault::cut_after(direction, bytes)
        }
    }

    /// Cut each connection after a random number of bytes in `min..max` in `direction`
    /// (seeded: the same seed cuts at the same places).
    pub(crate) fn cut_randomly(direction: Direction, min: u64, max: u64, seed: u64) -> Fault {
        assert!(min < max);
        Fault {
            direction,
            trigger: Trigger::RandomBytes { min, max, seed },
            action: FaultAction::Cut,
            times: None,
        }
    }

    /// Instead of the line holding `pattern` (every occurrence), send `with` and stall.
    pub(crate) fn replace_at_every(
        direction: Direction,
        pattern: &[u8],
        with: &'static [u8],
    ) -> Fault {
        Fault {
            action: FaultAction::Replace(with),
            ..Fault::cut_at_every(direction, pattern)
        }
    }

    /// Cut instead of forwarding the line holding the first occurrence of `pattern`
    /// (e.g. `b"[APPENDUID "` server→client: the server did the work, the client never
    /// hears of it).
    pub(crate) fn cut_at(direction: Direction, pattern: &[u8]) -> Fault {
        Fault {
            direction,
            trigger: Trigger::AtPattern {
                pattern: pattern.to_vec(),
                occurrence: 1,
            },
            action: FaultAction::Cut,
            times: Some(1),
        }
    }

    /// Cut at every occurrence of `pattern` (on every connection): a link on which that
    /// step never gets through.
    pub(crate) fn cut_at_every(direction: Direction, pattern: &[u8]) -> Fault {
        Fault {
            direction,
            trigger: Trigger::AtPattern {
                pattern: pattern.to_vec(),
                occurrence: 0,
            },
            action: FaultAction::Cut,
            times: None,
        }
    }

    /// Stall at every occurrence of `pattern` (on every connection).
    pub(crate) fn stall_at_every(direction: Direction, pattern: &[u8]) -> Fault {
        Fault {
            action: FaultAction::Stall,
            ..Fault::cut_at_every(direction, pattern)
        }
    }

    /// For a pattern trigger: fire at the `n`-th occurrence (1-based) instead of the first.
    pub(crate) fn nth(mut self, n: usize) -> Fault {
        assert!(n >= 1, "occurrences count from 1");
        if let Trigger::AtPattern { occurrence, .. } = &mut self.trigger {
            *occurrence = n;
        } else {
            panic!("nth() is for pattern triggers");
        }
        self
    }

    /// Fire on at most `k` connections; later connections are forwarded untouched (so a
    /// reconnect succeeds).
    pub(crate) fn times(mut self, k: usize) -> Fault {
        self.times = Some(k);
        self
    }
}

/// Configures a [`FaultProxy`].
#[derive(Clone)]
pub(crate) struct FaultProxyBuilder {
    upstream_port: u16,
    fault: Option<Fault>,
    delay: Option<Duration>,
    rewrite: Option<Rewrite>,
    answer: Option<Answer>,
    hostile: Option<Hostile>,
    throttle: Option<Throttle>,
    idle_drop: Option<Duration>,
}

/// Answer APPEND commands on the proxy's own with a tagged NO (`text`) instead of
/// forwarding them: the first `times` of them, and then every one that arrives within
/// `window` of the last throttled answer (a throttling server such as Microsoft 365's).
#[derive(Clone, Debug)]
pub(crate) struct Throttle {
    pub times: usize,
    pub window: Duration,
    pub text: String,
}

/// What a throttling proxy saw.
#[derive(Clone, Debug, Default)]
pub(crate) struct AppendLog {
    /// When each throttled APPEND was answered.
    pub throttled: Vec<std::time::Instant>,
    /// When each forwarded APPEND command line arrived.
    pub forwarded: Vec<std::time::Instant>,
}

/// Answers some client command lines itself instead of forwarding them (a server feature
/// the real server lacks, e.g. RFC 7889 `STATUS (APPENDLIMIT)` on Dovecot 2.3): given one
/// whole command line (CRLF included), the bytes to send back to the client, or `None` to
/// forward it. Only for commands a client sends on their own line and waits for.
pub(crate) type Answer = fn(&[u8]) -> Option<Vec<u8>>;

/// A scripted hostile server in front of the real one, per logged-in user: given what the
/// proxy knows of the connection and one chunk the client sent (ending in CRLF), what to do
/// instead of forwarding it, or `None` to forward it. Unlike [`Answer`] it sees who logged
/// in (the proxy decodes LOGIN and SASL PLAIN) and can keep state (it is a closure).
pub(crate) type Hostile = Arc<dyn Fn(&ConnView, &[u8]) -> Option<Act> + Send + Sync>;

/// What a [`Hostile`] hook knows of a connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnView {
    /// The proxy's number for the connection (0-based, over all connections).
    pub index: usize,
    /// The user that logged in on it (the authentication identity), once known.
    pub user: Option<String>,
    /// The command names (upper case) the client sent on it so far, in order
    /// (`UID FETCH` for UID commands), the current chunk's included.
    pub commands: Vec<String>,
    /// Bytes of a client literal still to come (not commands).
    literal_left: usize,
}

/// What a [`Hostile`] hook does with a client chunk. In every case the chunk is not
/// forwarded, and the connection is the hook's from then on: nothing more is forwarded in
/// either direction (the client's bytes are swallowed, the real server's not passed on).
#[derive(Debug, Clone)]
pub(crate) enum Act {
    /// Send these bytes (maybe none), then nothing more: a server that stops answering.
    Stall(Vec<u8>),
    /// Send these bytes, then close the connection (e.g. `* BYE ...`).
    Close(Vec<u8>),
    /// Send `head`, then `chunk` bytes of `x` every `every`, until the client goes away.
    Trickle {
        head: Vec<u8>,
        every: Duration,
        chunk: usize,
    },
}

/// A same-length byte substitution in one direction (a server that "edits" what it stores,
/// as seen from the client). Matched within one read chunk only: keep patterns short.
#[derive(Clone, Debug)]
pub(crate) struct Rewrite {
    pub direction: Direction,
    pub from: Vec<u8>,
    pub to: Vec<u8>,
}

impl FaultProxyBuilder {
    /// The fault to inject (none: a transparent proxy).
    pub(crate) fn fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// Replace `from` by `to` (same length) in every chunk flowing in `direction`.
    pub(crate) fn rewrite(mut self, direction: Direction, from: &[u8], to: &[u8]) -> Self {
        assert_eq!(
            from.len(),
            to.len(),
            "a rewrite keeps the length (literal sizes)"
        );
        self.rewrite = Some(Rewrite {
            direction,
            from: from.to_vec(),
            to: to.to_vec(),
        });
        self
    }

    /// Answer the client lines for which `answer` returns bytes; forward the rest.
    pub(crate) fn answer(mut self, answer: Answer) -> Self {
        self.answer = Some(answer);
        self
    }

    /// Forget a connection that carried nothing either way for `after`, silently, as a NAT
    /// router or firewall does: the first bytes after such a gap are not forwarded, and
    /// nothing more is (only the client's idle timeout gets it out). Counted in
    /// [`FaultProxy::idle_drops`].
    pub(crate) fn drop_idle_after(mut self, after: Duration) -> Self {
        self.idle_drop = Some(after);
        self
    }

    /// A scripted hostile server, per user (see [`Hostile`]).
    pub(crate) fn hostile(
        mut self,
        hook: impl Fn(&ConnView, &[u8]) -> Option<Act> + Send + Sync + 'static,
    ) -> Self {
        self.hostile = Some(Arc::new(hook));
        self
    }

    /// Throttle APPENDs (see [`Throttle`]); `MULTIAPPEND` is hidden from the client so that
    /// every message is its own APPEND, as with Microsoft 365.
    pub(crate) fn throttle(mut self, times: usize, window: Duration, text: &str) -> Self {
        self.throttle = Some(Throttle {
            times,
            window,
            text: text.to_string(),
        });
        self.rewrite(Direction::ServerToClient, b"MULTIAPPEND", b"XULTIAPPEND")
    }

    /// Sleep this long before forwarding each chunk (a slow network).
    pub(crate) fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Binds a free loopback port and starts accepting.
    pub(crate) fn start(self) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let shared = Arc::new(Shared {
            upstream_port: self.upstream_port,
            fault: self.fault,
            delay: self.delay,
            rewrite: self.rewrite,
            answer: self.answer,
            answered: AtomicUsize::new(0),
            hostile: self.hostile,
            hostile_acts: Mutex::new(Vec::new()),
            idle_drop: self.idle_drop,
            idle_drops: AtomicUsize::new(0),
            throttle: self.throttle,
            refuse_until: Mutex::new(None),
            refused: AtomicUsize::new(0),
            appends: Mutex::new(AppendLog::default()),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            fired: AtomicUsize::new(0),
            disarmed: AtomicBool::new(false),
            pattern_seen: AtomicUsize::new(0),
            sockets: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("spawn the proxy thread");
        FaultProxy {
            port,
            shared,
            accept: Some(accept),
        }
    }
}

/// A running proxy; stops (and drops every connection) on drop.
pub(crate) struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy in front of `127.0.0.1:upstream_port`.
    pub(crate) fn to(upstream_port: u16) -> FaultProxyBuilder {
        FaultProxyBuilder {
            upstream_port,
            fault: None,
            delay: None,
            rewrite: None,
            answer: None,
            hostile: None,
            throttle: None,
            idle_drop: None,
        }
    }

    /// The loopback port clients should connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many client lines the proxy answered itself (see [`FaultProxyBuilder::answer`]).
    pub(crate) fn answered(&self) -> usize {
        self.shared.answered.load(Ordering::SeqCst)
    }

    /// Connections forgotten after an idle gap ([`FaultProxyBuilder::drop_idle_after`]).
    pub(crate) fn idle_drops(&self) -> usize {
        self.shared.idle_drops.load(Ordering::SeqCst)
    }

    /// What the hostile hook did so far: (user, command, act) per act.
    pub(crate) fn hostile_acts(&self) -> Vec<(String, String, String)> {
        self.shared.hostile_acts.lock().unwrap().clone()
    }

    /// How many times the fault fired (a test should check it did, or it proved nothing).
    pub(crate) fn fired(&self) -> usize {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// Lets the fault fire (the default) or not, from now on: e.g. a link that is flaky
    /// only during one command of a longer story.
    pub(crate) fn set_armed(&self, armed: bool) {
        self.shared.disarmed.store(!armed, Ordering::SeqCst);
    }

    /// Cuts every open connection now and refuses new ones for `how_long` (a server that
    /// is restarting or overloaded).
    pub(crate) fn refuse_for(&self, how_long: Duration) {
        *self.shared.refuse_until.lock().unwrap() = Some(std::time::Instant::now() + how_long);
        for s in self.shared.sockets.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Connections closed because the proxy was refusing.
    pub(crate) fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// The APPENDs a throttling proxy answered and forwarded.
    pub(crate) fn appends(&self) -> AppendLog {
        self.shared.appends.lock().unwrap().clone()
    }

    /// Cuts every connection open now (later ones are forwarded as usual); returns how
    /// many sockets were shut down.
    pub(crate) fn cut_all_now(&self) -> usize {
        let sockets: Vec<TcpStream> = self.shared.sockets.lock().unwrap().drain(..).collect();
        for s in &sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
        sockets.len()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for s in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let threads: Vec<_> = self.shared.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

struct Shared {
    upstream_port: u16,
    fault: Option<Fault>,
    delay: Option<Duration>,
    rewrite: Option<Rewrite>,
    answer: Option<Answer>,
    answered: AtomicUsize,
    hostile: Option<Hostile>,
    idle_drop: Option<Duration>,
    /// Connections dropped for being idle.
    idle_drops: AtomicUsize,
    /// Every act of the hostile hook: (user, command it answered, what it did).
    hostile_acts: Mutex<Vec<(String, String, String)>>,
    throttle: Option<Throttle>,
    /// New connections are closed at once until then.
    refuse_until: Mutex<Option<std::time::Instant>>,
    refused: AtomicUsize,
    /// When each throttled APPEND was answered and when forwarded ones arrived.
    appends: Mutex<AppendLog>,
    stop: AtomicBool,
    connections: AtomicUsize,
    fired: AtomicUsize,
    /// While set, the fault never fires (see [`FaultProxy::set_armed`]).
    disarmed: AtomicBool,
    /// Occurrences of a pattern trigger seen so far, over all connections.
    pattern_seen: AtomicUsize,
    /// Every socket, to unblock readers on drop.
    sockets: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    /// Claims one firing of the fault; false when it has fired `times` already.
    fn claim(&self, fault: &Fault) -> bool {
        if self.disarmed.load(Ordering::SeqCst) {
            return false;
        }
        let limit = fault.times.unwrap_or(usize::MAX);
        self.fired
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }
}

/// State of one proxied connection, shared by its two pumps.
struct Conn {
    client: TcpStream,
    server: TcpStream,
    /// Set once a stall fired: neither pump forwards anything after that.
    stalled: AtomicBool,
    /// Set once the hostile hook took the connection over.
    hijacked: AtomicBool,
    /// What the hostile hook knows of it.
    view: Mutex<ConnView>,
    /// When it last carried bytes (either way).
    last: Mutex<std::time::Instant>,
}

impl Conn {
    fn cut(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        let _ = client.set_nonblocking(false);
        let index = shared.connections.fetch_add(1, Ordering::SeqCst);
        let refusing = shared
            .refuse_until
            .lock()
            .unwrap()
            .is_some_and(|until| std::time::Instant::now() < until);
        if refusing {
            // Like a server that is down: the connection ends before any greeting.
            shared.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let server = match TcpStream::connect(("127.0.0.1", shared.upstream_port)) {
            Ok(s) => s,
            Err(_) => continue, // dropping `client` refuses it, as the server would
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        {
            let mut sockets = shared.sockets.lock().unwrap();
            sockets.push(client.try_clone().expect("clone socket"));
            sockets.push(server.try_clone().expect("clone socket"));
        }
        let conn = Arc::new(Conn {
            client,
            server,
            stalled: AtomicBool::new(false),
            hijacked: AtomicBool::new(false),
            view: Mutex::new(ConnView {
                index,
                ..ConnView::default()
            }),
            last: Mutex::new(std::time::Instant::now()),
        });
        let mut threads = shared.threads.lock().unwrap();
        for direction in [Direction::ClientToServer, Direction::ServerToClient] {
            let (conn, shared) = (Arc::clone(&conn), Arc::clone(&shared));
            threads.push(thread::spawn(move || {
                if direction == Direction::ClientToServer && shared.throttle.is_some() {
                    throttle_pump(&conn, &shared)
                } else {
                    pump(&conn, &shared, direction, index)
                }
            }));
        }
    }
}

/// A well-mixed 64-bit number from `x` (splitmix64): reproducible per connection.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Forwards one direction of one connection until EOF, an error, or the fault.
fn pump(conn: &Conn, shared: &Shared, direction: Direction, index: usize) {
    let (mut from, mut to) = match direction {
        Direction::ClientToServer => (&conn.client, &conn.server),
        Direction::ServerToClient => (&conn.server, &conn.client),
    };
    let fault = shared.fault.as_ref().filter(|f| f.direction == direction);
    let mut carried: u64 = 0;
    let mut armed = true; // this connection may still fire
    let mut line: Vec<u8> = Vec::new(); // the current (already forwarded) partial line
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(d) = shared.delay {
            thread::sleep(d);
        }
        if conn.stalled.load(Ordering::SeqCst) {
            park(shared);
            return;
        }
        if let Some(after) = shared.idle_drop {
            let mut last = conn.last.lock().unwrap();
            if last.elapsed() >= after {
                // Forgotten by the "router": these bytes and everything after go nowhere.
                drop(last);
                shared.idle_drops.fetch_add(1, Ordering::SeqCst);
                conn.stalled.store(true, Ordering::SeqCst);
                park(shared);
                return;
            }
            *last = std::time::Instant::now();
        }
        if let Some(r) = shared.rewrite.as_ref().filter(|r| r.direction == direction) {
            let mut i = 0;
            while i + r.from.len() <= n {
                if buf[i..i + r.from.len()] == r.from[..] {
                    buf[i..i + r.from.len()].copy_from_slice(&r.to);
                    i += r.from.len();
                } else {
                    i += 1;
                }
            }
        }
        let chunk = &buf[..n];
        if conn.hijacked.load(Ordering::SeqCst) {
            // The hostile hook owns the connection: swallow whatever comes either way.
            continue;
        }
        if direction == Direction::ClientToServer && shared.hostile.is_some() {
            if let Some(act) = hostile_act(conn, shared, chunk) {
                conn.hijacked.store(true, Ordering::SeqCst);
                let client = &conn.client;
                match act {
                    Act::Stall(bytes) => {
                        let _ = (&*client).write_all(&bytes);
                    }
                    Act::Close(bytes) => {
                        let _ = (&*client).write_all(&bytes);
                        thread::sleep(Duration::from_millis(20));
                        conn.cut();
                        return;
                    }
                    Act::Trickle { head, every, chunk } => {
                        let conn_stop = &shared.stop;
                        let mut c = client;
                        if c.write_all(&head).is_ok() {
                            let filler = vec![b'x'; chunk];
                            while !conn_stop.load(Ordering::SeqCst) {
                                thread::sleep(every);
                                if c.write_all(&filler).is_err() {
                                    break;
                                }
                            }
                        }
                        return;
                    }
                }
                continue;
            }
        }
        if direction == Direction::ClientToServer {
            // Command lines the proxy answers itself (the client waits for their tagged
            // replies). Pipelined commands arrive together in one chunk: each line is
            // answered or forwarded on its own (the forwarded ones go to the server first).
            if let Some(answer) = shared.answer.filter(|_| chunk.ends_with(b"\r\n")) {
                let (mut forward, mut replies, mut answered) = (Vec::new(), Vec::new(), 0);
                for line in chunk.split_inclusive(|b| *b == b'\n') {
                    match answer(line) {
                        Some(reply) => {
                            answered += 1;
                            replies.extend_from_slice(&reply);
                        }
                        None => forward.extend_from_slice(line),
                    }
                }
                if answered > 0 {
                    shared.answered.fetch_add(answered, Ordering::SeqCst);
                    if !forward.is_empty() {
                        if to.write_all(&forward).is_err() {
                            break;
                        }
                        carried += forward.len() as u64;
                    }
                    if (&conn.client).write_all(&replies).is_err() {
                        break;
                    }
                    continue;
                }
            }
        }
        // How much of the chunk to forward before the fault fires, if it fires here.
        let fire_at: Option<usize> = match fault {
            Some(f) if armed => match &f.trigger {
                Trigger::AfterBytes(limit) => {
                    (carried + n as u64 >= *limit).then(|| (*limit - carried.min(*limit)) as usize)
                }
                Trigger::RandomBytes { min, max, seed } => {
                    let limit = min + splitmix(seed ^ (index as u64)) % (max - min);
                    (carried + n as u64 >= limit).then(|| (limit - carried.min(limit)) as usize)
                }
                Trigger::AtPattern {
                    pattern,
                    occurrence,
                } => {
                    // Every occurrence in the chunk counts: pipelined answers often arrive
                    // together, and counting one per read made `nth` depend on timing.
                    pattern_positions(&mut line, chunk, pattern)
                        .into_iter()
                        .find(|_| {
                            let seen = shared.pattern_seen.fetch_add(1, Ordering::SeqCst) + 1;
                            *occurrence == 0 || seen == *occurrence
                        })
                }
            },
            _ => None,
        };
        let fire_at = fire_at.filter(|_| {
            // Past its `times`, the fault leaves this connection alone for good.
            armed = shared.claim(fault.expect("only with a fault"));
            armed
        });
        match fire_at {
            None => {
                if to.write_all(chunk).is_err() {
                    break;
                }
                carried += n as u64;
            }
            Some(at) => {
                let _ = to.write_all(&chunk[..at]);
                let _ = to.flush();
                match fault.expect("fired").action {
                    FaultAction::Cut => {
                        // Let the forwarded part arrive before the FIN.
                        thread::sleep(Duration::from_millis(20));
                        conn.cut();
                    }
                    FaultAction::Stall => {
                        conn.stalled.store(true, Ordering::SeqCst);
                        park(shared);
                    }
                    FaultAction::Replace(with) => {
                        let _ = to.write_all(with);
                        let _ = to.flush();
                        conn.stalled.store(true, Ordering::SeqCst);
                        park(shared);
                    }
                }
                return;
            }
        }
    }
    // One side closed: pass it on (not when the hostile hook owns the connection: the
    // real server's end is none of the client's business then).
    if !conn.hijacked.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
}

/// Updates what the proxy knows of the connection from a client chunk (who logs in, which
/// commands), then asks the hostile hook about it.
fn hostile_act(conn: &Conn, shared: &Shared, chunk: &[u8]) -> Option<Act> {
    let hook = shared.hostile.as_ref()?;
    let mut view = conn.view.lock().unwrap();
    let mut command = String::new();
    let mut pos = 0;
    while pos < chunk.len() {
        if view.literal_left > 0 {
            let k = view.literal_left.min(chunk.len() - pos);
            view.literal_left -= k;
            pos += k;
            continue;
        }
        let Some(end) = chunk[pos..].windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let line = String::from_utf8_lossy(&chunk[pos..pos + end]).to_string();
        pos += end + 2;
        if let Some(n) = line
            .strip_suffix('}')
            .and_then(|l| l.rsplit_once('{'))
            .and_then(|(_, n)| n.trim_end_matches('+').parse::<usize>().ok())
        {
            view.literal_left = n;
        }
        let words: Vec<&str> = line.split(' ').collect();
        let verb = match words.get(1).map(|w| w.to_ascii_uppercase()) {
            Some(v) if v == "UID" => {
                format!("UID {}", words.get(2).unwrap_or(&"").to_ascii_uppercase())
            }
            Some(v) if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphabetic()) => v,
            _ => {
                // A SASL response line (base64 of `authz\0user\0password`).
                if let Some(user) = sasl_plain_user(line.trim()) {
                    view.user = Some(user);
                }
                continue;
            }
        };
        if verb == "LOGIN" {
            view.user = words.get(2).map(|u| u.trim_matches('"').to_string());
        }
        if verb == "AUTHENTICATE" {
            if let Some(user) = words.get(3).and_then(|w| sasl_plain_user(w)) {
                view.user = Some(user);
            }
        }
        if command.is_empty() {
            command = verb.clone();
        }
        view.commands.push(verb);
    }
    let act = hook(&view, chunk)?;
    let what = match &act {
        Act::Stall(b) if b.is_empty() => "silence".to_string(),
        Act::Stall(_) => "answer, then silence".to_string(),
        Act::Close(_) => "close".to_string(),
        Act::Trickle { .. } => "trickle".to_string(),
    };
    shared.hostile_acts.lock().unwrap().push((
        view.user.clone().unwrap_or_default(),
        command,
        what,
    ));
    Some(act)
}

/// The authentication identity in a SASL PLAIN message (base64), if it is one.
fn sasl_plain_user(b64: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if b64.len() < 4 {
        return None;
    }
    let (mut bits, mut n, mut out) = (0u32, 0, Vec::new());
    for c in b64.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c)?;
        bits = bits << 6 | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    let mut parts = out.split(|b| *b == 0);
    let (_authz, user, _password) = (parts.next()?, parts.next()?, parts.next()?);
    String::from_utf8(user.to_vec()).ok()
}

/// Client → server with APPEND throttling: forwards line by line (literals raw), and
/// answers throttled APPEND commands itself, swallowing their literals (LITERAL+ only:
/// the client must not wait for `+`).
fn throttle_pump(conn: &Conn, shared: &Shared) {
    let throttle = shared.throttle.as_ref().expect("throttle mode");
    let (mut from, mut to, mut client) = (&conn.client, &conn.server, &conn.client);
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    // Raw literal bytes still to pass (or swallow) before the next line.
    let mut literal: usize = 0;
    // The command being swallowed: its tag.
    let mut swallowing: Option<String> = None;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        loop {
            if literal > 0 {
                let k = literal.min(pending.len());
                if k == 0 {
                    break;
                }
                let chunk: Vec<u8> = pending.drain(..k).collect();
                if swallowing.is_none() && to.write_all(&chunk).is_err() {
                    return;
                }
                literal -= k;
                continue;
            }
            let Some(end) = pending.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let line: Vec<u8> = pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&line).to_string();
            let trimmed = text.trim_end();
            let next_literal = trimmed
                .strip_suffix('}')
                .and_then(|t| t.rsplit_once('{'))
                .and_then(|(_, n)| n.trim_end_matches('+').parse::<usize>().ok());
            if swallowing.is_none() {
                let mut words = trimmed.splitn(3, ' ');
                let tag = words.next().unwrap_or("").to_string();
                let is_append = words
                    .next()
                    .is_some_and(|c| c.eq_ignore_ascii_case("APPEND"));
                if is_append {
                    let mut log = shared.appends.lock().unwrap();
                    let now = std::time::Instant::now();
                    let within = log
                        .throttled
                        .last()
                        .is_some_and(|t| now.duration_since(*t) < throttle.window);
                    if log.throttled.len() < throttle.times || within {
                        log.throttled.push(now);
                        shared.fired.fetch_add(1, Ordering::SeqCst);
                        swallowing = Some(tag);
                    } else {
                        log.forwarded.push(now);
                    }
                }
            }
            match &swallowing {
                Some(tag) => {
                    if let Some(n) = next_literal {
                        literal = n;
                        if !trimmed.ends_with("+}") {
                            // A synchronising literal waits for the server's go-ahead.
                            let _ = client.write_all(b"+ go ahead\r\n");
                        }
                    } else {
                        // The command ends here: answer it.
                        let answer = format!("{tag} NO {}\r\n", throttle.text);
                        let _ = client.write_all(answer.as_bytes());
                        swallowing = None;
                    }
                }
                None => {
                    if to.write_all(&line).is_err() {
                        return;
                    }
                    if let Some(n) = next_literal {
                        literal = n;
                    }
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Waits (forwarding nothing) until the proxy is dropped.
fn park(shared: &Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(20));
    }
}

/// Looks for `pattern` in the current line plus `chunk`. Returns, for every match, where in
/// `chunk` the line holding it starts (0 if it started in an earlier chunk); a line counts
/// once however often it holds the pattern. Keeps the chunk's last partial line in `line`.
fn pattern_positions(line: &mut Vec<u8>, chunk: &[u8], pattern: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut start = 0;
    let mut matched = false; // the current line has matched already
    for (i, &b) in chunk.iter().enumerate() {
        line.push(b);
        if !matched && line.ends_with(pattern) {
            found.push(start);
            matched = true;
        }
        if b == b'\n' {
            line.clear();
            start = i + 1;
            matched = false;
        }
    }
    if matched {
        // The rest of a matched line cannot match again.
        line.clear();
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_position_finds_the_line_start() {
        let mut line = Vec::new();
        assert_eq!(
            pattern_positions(
                &mut line,
                b"* 1 EXISTS\r\nA1 OK [APPENDUID 1 2] x\r\n",
                b"[APPENDUID "
            ),
            vec![12]
        );
        let mut line = Vec::new();
        assert_eq!(
            pattern_positions(&mut line, b"* OK hi\r\nA1 OK [APPE", b"[APPENDUID "),
            Vec::<usize>::new()
        );
        assert_eq!(line, b"A1 OK [APPE");
        assert_eq!(
            pattern_positions(&mut line, b"NDUID 1 2]\r\n", b"[APPENDUID "),
            vec![0]
        );
        let mut line = Vec::new();
        assert_eq!(
            pattern_positions(&mut line, b"[APPEN\r\nDUID ", b"[APPENDUID "),
            Vec::<usize>::new()
        );
        // Pipelined answers in one read: every line that holds the pattern counts.
        let mut line = Vec::new();
        assert_eq!(
            pattern_positions(
                &mut line,
                b"* OK [READ-ONLY] a\r\nA1 OK x\r\n* OK [READ-ONLY] [READ-ONLY] b\r\nA2 OK",
                b"[READ-ONLY]"
            ),
            vec![0, 29]
        );
        assert_eq!(line, b"A2 OK");
    }

    #[test]
    fn cuts_after_exactly_n_bytes_and_only_k_times() {
        // An echo server upstream.
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        thread::spawn(move || {
            for s in echo.incoming().flatten() {
                thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let mut w = s;
                    let _ = std::io::copy(&mut r, &mut w);
                });
            }
        });
        let proxy = FaultProxy::to(echo_port)
            .fault(Fault::cut_after(Direction::ClientToServer, 10).times(1))
            .start();
        let roundtrip = |data: &[u8]| -> Vec<u8> {
            let mut s = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(data);
            let _ = s.shutdown(Shutdown::Write);
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            out
        };
        assert_eq!(roundtrip(b"0123456789abcdef"), b"0123456789");
        assert_eq!(roundtrip(b"0123456789abcdef"), b"0123456789abcdef");
        assert_eq!(proxy.fired(), 1);
        assert_eq!(proxy.connections(), 2);
    }
}
