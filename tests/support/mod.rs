//! Shared test support: a private Dovecot launcher, a raw IMAP client to fill and verify
//! servers independently of the crate's IMAP code, and a message builder.
//!
//! Used by the integration test binary (`tests/it/main.rs`) and by benches/examples via
//! `#[path = "../tests/support/mod.rs"] mod support;`. Not every user needs every helper.
//!
//! ```ignore
//! let dc = Dovecot::builder().layout(Layout::Classic).start(); // ~50 ms, killed on drop
//! let (user, pw) = dc.fresh_user("alice");                      // unique per process
//! let mut imap = RawImap::login(dc.port(), &user, &pw);
//! imap.create(&dc.layout().wire("Entw&APw-rfe/2024"));           // INBOX.Entw&APw-rfe.2024
//! let msg = MessageBuilder::new().subject("hi").pad_to(4096).build();
//! imap.append("INBOX", &["\\Seen", "$Label1"], Some("01-Jan-2020 10:00:00 +0000"), &msg);
//! let before = imap.snapshot();
//! // ... run the code under test ...
//! before.assert_unchanged(&imap.snapshot());
//! ```
#![allow(dead_code, unused_imports)]

mod dns;
mod dovecot;
mod fault_proxy;
mod message;
mod oauth;
mod raw_imap;

pub(crate) use dns::DnsServer;
pub(crate) use dovecot::{unique_user, DoveadmMessage, Dovecot, DovecotBuilder, Layout};
pub(crate) use fault_proxy::{
    Act, ConnView, Direction, Fault, FaultAction, FaultProxy, FaultProxyBuilder, Rewrite, Trigger,
};
pub(crate) use message::{to_crlf, MessageBuilder};
pub(crate) use oauth::{Checked, Introspection};
pub(crate) use raw_imap::{
    quote, FolderSnapshot, MailboxSnapshot, NewMessage, RawImap, RawMessage,
};

/// Debug form of a message body: length, a hash, and the start as text.
pub(crate) struct BodyDigest<'a>(pub &'a [u8]);

impl std::fmt::Debug for BodyDigest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // FNV-1a: only to tell bodies apart in failure output.
        let hash = self.0.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let head = String::from_utf8_lossy(&self.0[..self.0.len().min(48)]);
        write!(f, "<{} bytes #{hash:016x} {head:?}>", self.0.len())
    }
}
