//! A private Dovecot 2.3 per test: temp dir, free loopback port(s), passwd-file users.
//!
//! Tests start their own instance (about 40 ms) and create fresh users in it, so they stay
//! independent when `cargo test` runs them in parallel. The server is `dovecot -F` run as
//! a child process: it is killed on `Drop`, and a tiny watchdog kills it too if the test
//! process dies without dropping it (static instances, aborts).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CONF_TEMPLATE: &str = include_str!("dovecot.conf");
const INSTALL_HINT: &str =
    "hint: install it with `apt-get install -y dovecot-imapd` (Debian/Ubuntu, Dovecot 2.3)";
const DH_PEM: &str = "/usr/share/dovecot/dh.pem";
const START_TIMEOUT: Duration = Duration::from_secs(15);
const PORT_ATTEMPTS: usize = 10;

/// How folders are named on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Separator `/`, no prefix, `maildir:~/Maildir:LAYOUT=fs`.
    Modern,
    /// Separator `.`, every folder under `INBOX.` (Courier/Cyrus style), `maildir:~/Maildir`.
    Classic,
}

impl Layout {
    pub(crate) fn separator(self) -> char {
        match self {
            Layout::Modern => '/',
            Layout::Classic => '.',
        }
    }

    /// Namespace prefix: `""` or `"INBOX."`.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Layout::Modern => "",
            Layout::Classic => "INBOX.",
        }
    }

    /// Wire name of a folder given as a `/`-separated path of (already mUTF-7) names:
    /// `Classic.wire("a/b")` is `INBOX.a.b`; `INBOX` stays `INBOX`.
    pub(crate) fn wire(self, path: &str) -> String {
        if path.eq_ignore_ascii_case("INBOX") {
            return "INBOX".to_string();
        }
        let joined = path.replace('/', &self.separator().to_string());
        format!("{}{joined}", self.prefix())
    }

    fn mail_location(self) -> &'static str {
        match self {
            Layout::Modern => "maildir:~/Maildir:LAYOUT=fs",
            Layout::Classic => "maildir:~/Maildir",
        }
    }

    /// Folders auto-created (and subscribed) for every user, with their special-use attribute.
    /// Different names per layout, so tests exercise mapping by attribute.
    pub(crate) fn default_special_folders(self) -> Vec<(String, Option<String>)> {
        let list: &[(&str, &str)] = match self {
            Layout::Modern => &[
                ("Sent", "\\Sent"),
                ("Drafts", "\\Drafts"),
                ("Trash", "\\Trash"),
                ("Junk", "\\Junk"),
                ("Archive", "\\Archive"),
            ],
            Layout::Classic => &[
                ("Sent Items", "\\Sent"),
                ("Drafts", "\\Drafts"),
                ("Deleted Items", "\\Trash"),
                ("Junk", "\\Junk"),
            ],
        };
        list.iter()
            .map(|(n, a)| (n.to_string(), Some(a.to_string())))
            .collect()
    }
}

/// Options for [`Dovecot`]; see [`Dovecot::builder`].
#[derive(Clone, Debug)]
pub(crate) struct DovecotBuilder {
    layout: Layout,
    tls: bool,
    mail_on_tmpfs: bool,
    special_use_attributes: bool,
    special_folders: Option<Vec<(String, Option<String>)>>,
    extra_config: String,
}

impl DovecotBuilder {
    pub(crate) fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Also listen on an implicit-TLS port, and offer STARTTLS on the plain port.
    pub(crate) fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Keep the mail under `/dev/shm` (benchmarks).
    pub(crate) fn mail_on_tmpfs(mut self, on: bool) -> Self {
        self.mail_on_tmpfs = on;
        self
    }

    /// `false` keeps the special folders but drops their `special_use` attributes
    /// (a server without SPECIAL-USE: clients must fall back to names).
    pub(crate) fn special_use_attributes(mut self, on: bool) -> Self {
        self.special_use_attributes = on;
        self
    }

    /// Replace the layout's default special folders: `(name without prefix, attribute)`,
    /// e.g. `&[("Gesendet", Some("\\Sent"))]`; `&[]` for none.
    pub(crate) fn special_folders(mut self, folders: &[(&str, Option<&str>)]) -> Self {
        self.special_folders = Some(
            folders
                .iter()
                .map(|(n, a)| (n.to_string(), a.map(str::to_string)))
                .collect(),
        );
        self
    }

    /// Raw lines appended to the generated dovecot.conf (later settings win),
    /// e.g. `imap_capability = IMAP4rev1 LITERAL+` to hide extensions.
    pub(crate) fn extra_config(mut self, conf: &str) -> Self {
        self.extra_config.push_str(conf);
        self.extra_config.push('\n');
        self
    }

    /// Start the server and wait until it greets. Panics with the log tail on failure.
    pub(crate) fn start(self) -> Dovecot {
        let started = Instant::now();
        check_environment();
        let dir = tempfile::Builder::new()
            .prefix("ms-dovecot-")
            .tempdir()
            .expect("create a temp dir for dovecot");
        set_mode(dir.path(), 0o755);
        let tmpfs_dir = self.mail_on_tmpfs.then(|| {
            tempfile::Builder::new()
                .prefix("ms-mail-")
                .tempdir_in("/dev/shm")
                .expect("create a mail dir under /dev/shm")
        });
        let mail_root = match &tmpfs_dir {
            Some(t) => t.path().to_path_buf(),
            None => dir.path().join("mail"),
        };
        fs::create_dir_all(&mail_root).expect("create the mail root");
        set_mode(&mail_root, 0o755);
        let ids = system_ids();
        chown(&mail_root, Some(ids.nobody_uid), Some(ids.nogroup_gid))
            .expect("chown the mail root to nobody:nogroup");

        let passwd = Passwd::create(dir.path(), ids.dovecot_gid);

        let cert = self.tls.then(test_cert);
        let conf_path = dir.path().join("dovecot.conf");
        let log_path = dir.path().join("dovecot.log");
        let stderr_path = dir.path().join("dovecot.stderr");

        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port(&[]);
            let tls_port = self.tls.then(|| free_port(&[port]));
            let greeting = format!("mailshift-test-{}-{}", std::process::id(), next_id());
            let conf = self.render_conf(
                dir.path(),
                &mail_root,
                port,
                tls_port,
                cert.map(|c| c.dir.as_path()),
                &greeting,
            );
            fs::write(&conf_path, conf).expect("write dovecot.conf");
            let _ = fs::remove_file(&log_path);
            let stderr = fs::File::create(&stderr_path).expect("create dovecot.stderr");
            let mut child = Command::new(find_program("dovecot"))
                .arg("-F")
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run `dovecot`: {e}\n{INSTALL_HINT}"));
            match wait_ready(&mut child, port, &greeting, started + START_TIMEOUT) {
                Ready::Yes => {
                    let (watchdog, watchdog_stdin) = spawn_watchdog(child.id());
                    return Dovecot {
                        child,
                        watchdog,
                        _watchdog_stdin: watchdog_stdin,
                        layout: self.layout,
                        port,
                        tls_port,
                        cert_path: cert.map(|c| c.cert.clone()),
                        conf_path,
                        log_path,
                        stderr_path,
                        greeting,
                        mail_root,
                        passwd: Mutex::new(passwd),
                        start_time: started.elapsed(),
                        _tmpfs_dir: tmpfs_dir,
                        _dir: dir,
                    };
                }
                Ready::Exited(status) => {
                    let log = read_lossy(&log_path) + &read_lossy(&stderr_path);
                    if log.contains("Address already in use") && attempt < PORT_ATTEMPTS {
                        continue;
                    }
                    let mut conf = String::new();
                    if log.contains("Error in configuration file") {
                        conf = read_lossy(&conf_path)
                            .lines()
                            .enumerate()
                            .map(|(i, l)| format!("{:4} {l}\n", i + 1))
                            .collect();
                        conf.insert_str(0, "--- dovecot.conf ---\n");
                    }
                    panic!(
                        "dovecot exited during startup ({status})\n{conf}--- dovecot.log ---\n{}",
                        tail(&log, 40)
                    );
                }
                Ready::TimedOut => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = read_lossy(&log_path) + &read_lossy(&stderr_path);
                    panic!(
                        "dovecot did not greet on 127.0.0.1:{port} within {START_TIMEOUT:?}\n--- dovecot.log ---\n{}",
                        tail(&log, 40)
                    );
                }
            }
        }
        unreachable!("the last attempt panics")
    }

    fn render_conf(
        &self,
        dir: &Path,
        mail_root: &Path,
        port: u16,
        tls_port: Option<u16>,
        cert_dir: Option<&Path>,
        greeting: &str,
    ) -> String {
        let folders = self
            .special_folders
            .clone()
            .unwrap_or_else(|| self.layout.default_special_folders());
        let mut ns = String::from("namespace inbox {\n  inbox = yes\n");
        let _ = writeln!(ns, "  separator = {}", self.layout.separator());
        let _ = writeln!(ns, "  prefix = {}", self.layout.prefix());
        for (name, attr) in &folders {
            let _ = writeln!(ns, "  mailbox \"{name}\" {{");
            if let (true, Some(attr)) = (self.special_use_attributes, attr) {
                let _ = writeln!(ns, "    special_use = {attr}");
            }
            ns.push_str("    auto = subscribe\n  }\n");
        }
        ns.push('}');
        let ssl = match cert_dir {
            Some(c) => format!(
                "ssl = yes\nssl_cert = <{0}/cert.pem\nssl_key = <{0}/key.pem\nssl_dh = <{DH_PEM}",
                c.display()
            ),
            None => "ssl = no".to_string(),
        };
        CONF_TEMPLATE
            .replace(
                "{{INSTANCE}}",
                &format!("t-{}-{}", std::process::id(), port),
            )
            .replace("{{DIR}}", &dir.display().to_string())
            .replace("{{MAIL_ROOT}}", &mail_root.display().to_string())
            .replace("{{GREETING}}", greeting)
            .replace("{{MAIL_LOCATION}}", self.layout.mail_location())
            .replace("{{NAMESPACE}}", &ns)
            .replace("{{SSL}}", &ssl)
            .replace("{{PORT}}", &port.to_string())
            .replace("{{TLS_PORT}}", &tls_port.unwrap_or(0).to_string())
            .replace("{{EXTRA}}", &self.extra_config)
    }
}

/// A running private Dovecot; stopped (SIGKILL) on drop.
pub(crate) struct Dovecot {
    child: Child,
    watchdog: Child,
    _watchdog_stdin: ChildStdin,
    layout: Layout,
    port: u16,
    tls_port: Option<u16>,
    cert_path: Option<PathBuf>,
    conf_path: PathBuf,
    log_path: PathBuf,
    stderr_path: PathBuf,
    greeting: String,
    mail_root: PathBuf,
    passwd: Mutex<Passwd>,
    start_time: Duration,
    // Dropped after `drop()` has stopped the server.
    _tmpfs_dir: Option<tempfile::TempDir>,
    _dir: tempfile::TempDir,
}

impl Dovecot {
    /// Modern layout, no TLS, mail on disk, default special folders with attributes.
    pub(crate) fn builder() -> DovecotBuilder {
        DovecotBuilder {
            layout: Layout::Modern,
            tls: false,
            mail_on_tmpfs: false,
            special_use_attributes: true,
            special_folders: None,
            extra_config: String::new(),
        }
    }

    /// Shorthand for `Dovecot::builder().layout(layout).start()`.
    pub(crate) fn start(layout: Layout) -> Dovecot {
        Dovecot::builder().layout(layout).start()
    }

    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// Plain IMAP port (STARTTLS offered when started with `.tls(true)`).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Implicit-TLS port; panics unless started with `.tls(true)`.
    pub(crate) fn tls_port(&self) -> u16 {
        self.tls_port
            .expect("tls_port(): this Dovecot was started without `.tls(true)`")
    }

    /// PEM certificate (self-signed, CN=localhost, SAN localhost + 127.0.0.1) to trust.
    pub(crate) fn ca_pem_path(&self) -> &Path {
        self.cert_path
            .as_deref()
            .expect("ca_pem_path(): this Dovecot was started without `.tls(true)`")
    }

    pub(crate) fn config_path(&self) -> &Path {
        &self.conf_path
    }

    /// Directory holding one home directory per user (`<root>/<user>/Maildir`).
    pub(crate) fn mail_root(&self) -> &Path {
        &self.mail_root
    }

    /// How long `start()` took.
    pub(crate) fn start_time(&self) -> Duration {
        self.start_time
    }

    /// Add a user, or change a password (that takes up to a second); takes effect at once.
    /// The special folders are created at the user's first login.
    pub(crate) fn add_user(&self, user: &str, password: &str) {
        for (what, v) in [("user", user), ("password", password)] {
            assert!(
                !v.is_empty() && !v.contains([':', '/', '%', '\n', '\r']) && v != "." && v != "..",
                "add_user: {what} `{v}` must be non-empty, without `:`, `/`, `%` or line breaks"
            );
        }
        let mut passwd = self.passwd.lock().unwrap_or_else(|e| e.into_inner());
        passwd.set(user, password);
    }

    /// `unique_user(base)` added with password `"<user>-pw"`; returns `(user, password)`.
    pub(crate) fn fresh_user(&self, base: &str) -> (String, String) {
        let user = unique_user(base);
        let password = format!("{user}-pw");
        self.add_user(&user, &password);
        (user, password)
    }

    /// Run `doveadm -c CONF ARGS...` and return its output (not checked).
    pub(crate) fn doveadm(&self, args: &[&str]) -> Output {
        Command::new(find_program("doveadm"))
            .arg("-c")
            .arg(&self.conf_path)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `doveadm`: {e}\n{INSTALL_HINT}"))
    }

    /// Every message of `user` matching the doveadm search query `query` (e.g.
    /// `&["mailbox", "Entwürfe/A & B"]` with the UTF-8 name, or `&["ALL"]`), read
    /// with `doveadm fetch` independently of any IMAP code. Panics if doveadm fails.
    pub(crate) fn doveadm_fetch(&self, user: &str, query: &[&str]) -> Vec<DoveadmMessage> {
        let mut args = vec![
            "fetch",
            "-u",
            user,
            "mailbox uid flags date.received.unixtime size.physical text",
        ];
        args.extend_from_slice(query);
        let out = self.doveadm(&args);
        assert!(
            out.status.success(),
            "doveadm fetch -u {user} {query:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        parse_doveadm_fetch(&out.stdout)
    }

    /// The last 40 lines of dovecot.log.
    pub(crate) fn log_tail(&self) -> String {
        tail(&read_lossy(&self.log_path), 40)
    }

    /// Stops the server as an admin does (SIGTERM: clients get `BYE Server shutting
    /// down`), then starts it again on the same port with the same mail and users.
    /// Returns how long it was away.
    pub(crate) fn restart(&mut self) -> Duration {
        let started = Instant::now();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        // The master's own children first (imap sessions survive a master that only
        // stops: SIGTERM makes each say `BYE Server shutting down`), then the master.
        let master = self.child.id();
        let children = fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        let mut pids: Vec<String> = children.split_whitespace().map(str::to_string).collect();
        pids.push(master.to_string());
        let _ = Command::new("kill").arg("-TERM").args(&pids).status();
        let _ = self.child.wait();
        for _ in 0..100 {
            let stderr = fs::File::create(&self.stderr_path).expect("create dovecot.stderr");
            let mut child = Command::new(find_program("dovecot"))
                .arg("-F")
                .arg("-c")
                .arg(&self.conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("restart dovecot");
            match wait_ready(
                &mut child,
                self.port,
                &self.greeting,
                Instant::now() + START_TIMEOUT,
            ) {
                Ready::Yes => {
                    let (watchdog, stdin) = spawn_watchdog(child.id());
                    self.child = child;
                    self.watchdog = watchdog;
                    self._watchdog_stdin = stdin;
                    return started.elapsed();
                }
                // The old master's children may still hold the port for a moment.
                Ready::Exited(_) => std::thread::sleep(Duration::from_millis(50)),
                Ready::TimedOut => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("dovecot did not come back on port {}", self.port);
                }
            }
        }
        panic!(
            "dovecot did not restart on port {}\n{}",
            self.port,
            self.log_tail()
        );
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // Watchdog first, so it can never signal a recycled pid.
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        // SIGKILL, not `doveadm stop`/SIGTERM: a graceful stop takes 1.1 s, and the
        // children (log, auth, imap, ...) exit on their own when the master is gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- dovecot.log of the failed test (127.0.0.1:{}) ---\n{}",
                self.port,
                self.log_tail()
            );
        }
    }
}

/// One message as `doveadm fetch` sees it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DoveadmMessage {
    /// UTF-8 name as doveadm prints it (`Entwürfe`, `INBOX.Sent Items`).
    pub mailbox: String,
    pub uid: u32,
    /// Sorted, without `\Recent`.
    pub flags: Vec<String>,
    pub received_unixtime: i64,
    /// The message exactly as stored (CRLF: the config sets `mail_save_crlf = yes`).
    pub text: Vec<u8>,
}

impl std::fmt::Debug for DoveadmMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoveadmMessage")
            .field("mailbox", &self.mailbox)
            .field("uid", &self.uid)
            .field("flags", &self.flags)
            .field("received_unixtime", &self.received_unixtime)
            .field("text", &super::BodyDigest(&self.text))
            .finish()
    }
}

/// Parse doveadm's default ("pager") output: `key: value` lines, the `text` field last and
/// multi-line, records separated by a form feed line. `size.physical` gives the text length,
/// so bodies may contain anything.
fn parse_doveadm_fetch(out: &[u8]) -> Vec<DoveadmMessage> {
    let mut msgs = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let text = loop {
            let nl = rest
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or_else(|| panic!("doveadm fetch: truncated record in {:?}", lossy(out)));
            let line = String::from_utf8_lossy(&rest[..nl]).into_owned();
            rest = &rest[nl + 1..];
            if line == "text:" {
                let len: usize = fields["size.physical"].parse().expect("size.physical");
                let text = rest[..len].to_vec();
                rest = &rest[len..];
                break text;
            }
            let (k, v) = line
                .split_once(": ")
                .or_else(|| line.split_once(':'))
                .unwrap_or_else(|| panic!("doveadm fetch: unexpected line `{line}`"));
            fields.insert(k.to_string(), v.to_string());
        };
        // Separator: an optional newline closing the value, then a form feed line.
        rest = rest.strip_prefix(b"\n").unwrap_or(rest);
        rest = rest.strip_prefix(b"\x0c\n").unwrap_or(rest);
        let mut flags: Vec<String> = fields["flags"]
            .split_whitespace()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .map(str::to_string)
            .collect();
        flags.sort();
        msgs.push(DoveadmMessage {
            mailbox: fields["mailbox"].clone(),
            uid: fields["uid"].parse().expect("uid"),
            flags,
            received_unixtime: fields["date.received.unixtime"]
                .parse()
                .expect("date.received.unixtime"),
            text,
        });
    }
    msgs
}

/// `base` plus a per-process unique suffix: `alice` -> `alice-12345-7`.
pub(crate) fn unique_user(base: &str) -> String {
    format!("{base}-{}-{}", std::process::id(), next_id())
}

fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The users of one instance, as passwd-files (root:dovecot 0640: auth runs as `dovecot`).
///
/// Dovecot re-reads a passwd-file at most once per second (`passwd_file_sync()` skips the
/// stat when it already synced in the current second), so a user added right after another
/// login would be "unknown" for up to a second. Hence the config reads passwords from one
/// file per user (`users/%u`: a new user's file is read fresh), looks users up in the
/// combined `passwd` (which `doveadm -A` iterates) and falls back to a static userdb.
struct Passwd {
    dir: PathBuf,
    dovecot_gid: u32,
    users: BTreeMap<String, String>,
}

impl Passwd {
    fn create(dir: &Path, dovecot_gid: u32) -> Passwd {
        let users_dir = dir.join("users");
        fs::create_dir(&users_dir).expect("create the passwd dir");
        set_mode(&users_dir, 0o750);
        chown(&users_dir, Some(0), Some(dovecot_gid)).expect("chown users/ to root:dovecot");
        let passwd = Passwd {
            dir: dir.to_path_buf(),
            dovecot_gid,
            users: BTreeMap::new(),
        };
        passwd.install(&dir.join("passwd"), "");
        passwd
    }

    fn set(&mut self, user: &str, password: &str) {
        let changed = self.users.contains_key(user);
        self.users.insert(user.to_string(), password.to_string());
        // The trailing colons matter: without them, "user is missing userdb info".
        let line = |u: &str, p: &str| format!("{u}:{{PLAIN}}{p}::::::\n");
        let user_file = self.dir.join("users").join(user);
        let old_mtime = fs::metadata(&user_file).and_then(|m| m.modified()).ok();
        self.install(&user_file, &line(user, password));
        if changed {
            // Same size is possible: force a new mtime, then let the second pass so the
            // auth process stats the file again on the next login.
            if let Some(old) = old_mtime {
                let new = SystemTime::now().max(old + Duration::from_secs(1));
                let f = fs::File::options()
                    .write(true)
                    .open(&user_file)
                    .expect("open passwd");
                f.set_modified(new).expect("set passwd mtime");
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            std::thread::sleep(Duration::from_nanos(
                1_000_000_000 - u64::from(now.subsec_nanos()) + 10_000_000,
            ));
        }
        let all: String = self.users.iter().map(|(u, p)| line(u, p)).collect();
        self.install(&self.dir.join("passwd"), &all);
    }

    /// Write atomically (temp file + rename) with the right owner and mode.
    fn install(&self, path: &Path, text: &str) {
        let tmp = path.with_extension("new");
        fs::write(&tmp, text).expect("write passwd");
        set_mode(&tmp, 0o640);
        chown(&tmp, Some(0), Some(self.dovecot_gid)).expect("chown passwd to root:dovecot");
        fs::rename(&tmp, path).expect("install passwd");
    }
}

enum Ready {
    Yes,
    Exited(std::process::ExitStatus),
    TimedOut,
}

/// Poll until our instance greets on `port` with our unique greeting (another test's
/// instance may have grabbed the same port: then ours exits with "Address already in use").
fn wait_ready(child: &mut Child, port: u16, greeting: &str, deadline: Instant) -> Ready {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Ready::Exited(status);
        }
        if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            if BufReader::new(stream).read_line(&mut line).is_ok()
                && line.starts_with("* OK")
                && line.contains(greeting)
            {
                return Ready::Yes;
            }
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    Ready::TimedOut
}

/// A shell that kills `pid` when its stdin reaches EOF, i.e. when this process is gone
/// (the pipe is close-on-exec, so only we hold its write end).
fn spawn_watchdog(pid: u32) -> (Child, ChildStdin) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("read -r _line; kill -9 \"$0\" 2>/dev/null")
        .arg(pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the dovecot watchdog (sh)");
    let stdin = child.stdin.take().expect("watchdog stdin");
    (child, stdin)
}

/// A free loopback port (racy by nature: the caller retries on "Address already in use").
fn free_port(avoid: &[u16]) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local addr").port();
        if !avoid.contains(&port) {
            return port;
        }
    }
}

struct SystemIds {
    nobody_uid: u32,
    nogroup_gid: u32,
    dovecot_gid: u32,
}

fn system_ids() -> SystemIds {
    let id = |file: &str, name: &str| -> u32 {
        let text = fs::read_to_string(file).unwrap_or_default();
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[0] == name)
            .and_then(|f| f[2].parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` in {file}\n{INSTALL_HINT}"))
    };
    SystemIds {
        nobody_uid: id("/etc/passwd", "nobody"),
        nogroup_gid: id("/etc/group", "nogroup"),
        dovecot_gid: id("/etc/group", "dovecot"),
    }
}

/// Once per process: root, `dovecot` installed, version 2.3.x.
fn check_environment() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
        if uid != 0 {
            return Err(format!(
                "the Dovecot test harness must run as root (uid is {uid}): dovecot drops privileges to `nobody` for mail"
            ));
        }
        let out = match Command::new(find_program("dovecot")).arg("--version").output() {
            Ok(out) => out,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(format!("`dovecot` is not installed\n{INSTALL_HINT}"))
            }
            Err(e) => return Err(format!("cannot run `dovecot --version`: {e}\n{INSTALL_HINT}")),
        };
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !version.starts_with("2.3.") {
            return Err(format!(
                "Dovecot `{version}` found, but the test harness needs 2.3.x (2.4 rejects its config syntax)\n{INSTALL_HINT}"
            ));
        }
        if !Path::new(DH_PEM).exists() {
            return Err(format!("`{DH_PEM}` is missing\n{INSTALL_HINT}"));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

struct CertFiles {
    dir: PathBuf,
    cert: PathBuf,
}

/// A self-signed certificate for localhost/127.0.0.1, made with the openssl CLI once per
/// week and shared by all test processes (valid for 30 days; a new directory per week, so
/// a running instance never sees a half-replaced pair).
fn test_cert() -> &'static CertFiles {
    static CERT: OnceLock<CertFiles> = OnceLock::new();
    CERT.get_or_init(|| {
        let base = option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let week = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() / (7 * 86_400))
            .unwrap_or(0);
        let dir = base.join(format!("mailshift-test-cert-w{week}"));
        let cert = dir.join("cert.pem");
        if !cert.exists() {
            fs::create_dir_all(&base).expect("create the cert cache dir");
            let tmp = tempfile::Builder::new()
                .prefix("mailshift-test-cert-tmp-")
                .tempdir_in(&base)
                .expect("temp dir for the cert");
            let out = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
                .args(["-subj", "/CN=localhost"])
                .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
                .arg("-keyout")
                .arg(tmp.path().join("key.pem"))
                .arg("-out")
                .arg(tmp.path().join("cert.pem"))
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run `openssl`: {e}\nhint: apt-get install -y openssl")
                });
            assert!(
                out.status.success(),
                "openssl req failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            set_mode(tmp.path(), 0o755);
            // Losing the race to another process is fine: its certificate is as good.
            let tmp_path = tmp.keep();
            if fs::rename(&tmp_path, &dir).is_err() {
                let _ = fs::remove_dir_all(&tmp_path);
            }
        }
        CertFiles { dir, cert }
    })
}

/// `name` from PATH, else from the sbin directories (a CI user's PATH may lack them).
fn find_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

fn read_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
