//! The destination writer (`mailshift::imap::Writer`) against real Dovecot: CREATE of
//! nested and non-ASCII folders on both layouts, SUBSCRIBE, SELECT with PERMANENTFLAGS,
//! APPEND batches (flags, keywords, old INTERNALDATEs, exact bytes, APPENDUID), a refused
//! message inside a batch, the fallbacks without MULTIAPPEND/LITERAL+, and the speed of a
//! 2,000-message copy. Everything is checked with the harness's own raw client (RawImap,
//! doveadm), never with the crate's Reader.

use std::time::{Duration, Instant};

use mailshift::imap::{AppendItem, Credentials, Writer};
use mailshift::settings::{Security, ServerSettings};
use secrecy::SecretString;

use crate::support::{Dovecot, Layout, MessageBuilder, RawImap};

fn server(port: u16) -> ServerSettings {
    crate::imap_layer::server(port, Security::Plain)
}

use crate::imap_layer::{limits, wn};

async fn writer(dc: &Dovecot, user: &str, pw: &str) -> Writer {
    let creds = Credentials {
        user: user.into(),
        password: Some(SecretString::from(pw.to_string())),
    };
    Writer::connect(&server(dc.port()), &limits(), &creds)
        .await
        .expect("writer connects")
}

fn item(flags: &[&str], date: Option<&str>, body: Vec<u8>) -> AppendItem<'static> {
    AppendItem {
        flags: flags.iter().map(|f| f.to_string()).collect(),
        internal_date: date.map(str::to_string),
        body: body.into(),
    }
}

fn small(i: usize) -> Vec<u8> {
    MessageBuilder::new()
        .subject(&format!("message {i}"))
        .message_id(Some(&format!("<m{i}@example.org>")))
        .body(format!("body {i}\n"))
        .build()
}

/// `Entwürfe` and `Ärger` in modified UTF-7.
const ENTWUERFE: &str = "Entw&APw-rfe";
const AERGER: &str = "&AMQ-rger";

async fn creates_folders(layout: Layout) {
    let dc = Dovecot::start(layout);
    let (user, pw) = dc.fresh_user("create");
    let mut w = writer(&dc, &user, &pw).await;
    let wanted = [
        layout.wire("Projects"),
        layout.wire("Projects/2024"),
        layout.wire("Projects/2024/Q1"),
        layout.wire(ENTWUERFE),
        layout.wire(&format!("{ENTWUERFE}/{AERGER}")),
    ];
    for name in &wanted {
        w.create(&wn(name))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Existing folders are a success: again, INBOX, and an auto-created special folder.
    w.create(&wn(&wanted[1])).await.expect("create twice");
    w.create(&wn("INBOX")).await.expect("create INBOX");
    w.create(&wn(&layout.wire(&layout.default_special_folders()[0].0)))
        .await
        .expect("create Sent");
    w.subscribe(&wn(&wanted[4])).await.expect("subscribe");
    // A refusal carries the server's words and keeps the session.
    for bad in ["", "bad&name"] {
        let err = w.create(&wn(bad)).await.unwrap_err();
        assert!(!err.kills_session(), "{err}");
        assert!(err.to_string().contains("CREATE"), "{err}");
    }
    w.create(&wn(&layout.wire("After/Error")))
        .await
        .expect("session still works");
    w.logout().await.expect("logout");

    let mut raw = RawImap::login(dc.port(), &user, &pw);
    let names: Vec<String> = raw.list().into_iter().map(|(_, _, n)| n).collect();
    for name in &wanted {
        assert!(names.contains(name), "`{name}` not in {names:?}");
    }
    // (Dovecot subscribes its auto-created special folders itself.)
    let subscribed = raw.list_subscribed();
    assert!(subscribed.contains(&wanted[4]), "{subscribed:?}");
    assert!(!subscribed.contains(&wanted[3]), "{subscribed:?}");
    // The server decoded the names as we meant them.
    let out = dc.doveadm(&["mailbox", "list", "-u", &user]);
    let listed = String::from_utf8_lossy(&out.stdout);
    let sep = layout.separator();
    for want in ["Entwürfe".to_string(), format!("Entwürfe{sep}Ärger")] {
        let want = format!("{}{want}", layout.prefix());
        assert!(
            listed.lines().any(|l| l == want),
            "`{want}` not in\n{listed}"
        );
    }
}

#[tokio::test]
async fn creates_nested_and_non_ascii_folders_modern() {
    creates_folders(Layout::Modern).await;
}

#[tokio::test]
async fn creates_nested_and_non_ascii_folders_classic() {
    creates_folders(Layout::Classic).await;
}

async fn append_round_trip(layout: Layout) {
    let dc = Dovecot::start(layout);
    let (user, pw) = dc.fresh_user("append");
    let folder = layout.wire("Archive/2001");
    let mut w = writer(&dc, &user, &pw).await;
    assert!(w.capabilities().has("MULTIAPPEND"));
    w.create(&wn(&layout.wire("Archive"))).await.unwrap();
    w.create(&wn(&folder)).await.unwrap();

    // CRLF and 8-bit bytes (not UTF-8) in the body, an LF-only header line would be fixed
    // by the caller, not here: bytes go out as given.
    let mut eight_bit =
        b"Subject: raw\r\nX-Bytes: \xe4\xf6\xfc\r\n\r\n\xff\xfe binary-ish\r\n".to_vec();
    eight_bit.extend_from_slice(&[b'x'; 5000]);
    eight_bit.extend_from_slice(b"\r\n");
    let items = vec![
        item(
            &["\\Seen", "$Label1", "\\Recent", "Keyword_x"],
            Some("2001-01-01T10:00:00+02:00"),
            small(0),
        ),
        item(&[], None, eight_bit.clone()),
        item(
            &["\\Flagged", "\\Answered", "\\Draft"],
            Some("1999-12-31T23:59:59Z"),
            small(2),
        ),
    ];
    let results = w.append_batch(&wn(&folder), &items).await.expect("append");
    let uids: Vec<u32> = results
        .iter()
        .map(|r| r.clone().expect("appended").expect("APPENDUID"))
        .collect();
    assert_eq!(uids, vec![1, 2, 3]);

    // One message alone (a single APPEND) and a second batch continue the numbering.
    let results = w
        .append_batch(&wn(&folder), &[item(&["\\Seen"], None, small(3))])
        .await
        .unwrap();
    assert_eq!(results, vec![Ok(Some(4))]);

    let sel = w.select(&wn(&folder)).await.expect("select");
    assert_eq!(sel.status.exists, 4);
    assert_eq!(sel.status.uidnext, Some(5));
    assert!(sel.new_keywords_allowed, "{sel:?}");
    assert!(sel.permanent_flags.iter().any(|f| f == "\\*"), "{sel:?}");
    assert!(sel.permanent_flags.iter().any(|f| f == "\\Seen"), "{sel:?}");

    // Re-reading what arrived since uid 3, and since a uid beyond the end (`n:*` trap).
    let mut since = Vec::new();
    w.fetch_metadata_since(3, |m| since.push(m)).await.unwrap();
    assert_eq!(since.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![3, 4]);
    assert!(String::from_utf8_lossy(&since[0].header).contains("message 2"));
    assert_eq!(since[0].size, items[2].body.len() as u64);
    let mut none = Vec::new();
    w.fetch_metadata_since(5, |m| none.push(m.uid))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    // Appending into the selected folder works too (EXISTS arrives unsolicited).
    let results = w
        .append_batch(
            &wn(&folder),
            &[item(&[], None, small(5)), item(&[], None, small(6))],
        )
        .await
        .unwrap();
    assert_eq!(results, vec![Ok(Some(5)), Ok(Some(6))]);
    w.logout().await.unwrap();

    let mut raw = RawImap::login(dc.port(), &user, &pw);
    let msgs = raw.fetch_all(&folder);
    assert_eq!(msgs.len(), 6);
    assert_eq!(
        msgs.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert_eq!(msgs[0].flags, vec!["$Label1", "Keyword_x", "\\Seen"]);
    assert!(
        msgs[0].internal_date == "01-Jan-2001 10:00:00 +0200"
            || msgs[0].internal_date == "01-Jan-2001 08:00:00 +0000",
        "{}",
        msgs[0].internal_date
    );
    assert!(msgs[1].flags.is_empty(), "{:?}", msgs[1].flags);
    assert_eq!(msgs[2].flags, vec!["\\Answered", "\\Draft", "\\Flagged"]);
    assert_eq!(msgs[2].internal_date, "31-Dec-1999 23:59:59 +0000");
    assert_eq!(msgs[3].flags, vec!["\\Seen"]);
    for (msg, want) in msgs.iter().zip(items.iter().map(|i| &i.body)) {
        assert_eq!(&msg.body[..], &want[..], "bytes of uid {}", msg.uid);
    }
    assert_eq!(msgs[1].body, eight_bit);
}

#[tokio::test]
async fn append_batch_round_trips_modern() {
    append_round_trip(Layout::Modern).await;
}

#[tokio::test]
async fn append_batch_round_trips_classic() {
    append_round_trip(Layout::Classic).await;
}

/// Dovecot refuses messages over `quota_max_mail_size` with
/// `NO [LIMIT] Mail size is larger than the maximum size allowed by server configuration`.
const SIZE_LIMIT: &str = "mail_plugins = $mail_plugins quota\n\
    plugin {\n  quota = count:User quota\n  quota_rule = *:storage=1G\n  \
    quota_max_mail_size = 10k\n  quota_vsizes = yes\n}";

/// Without MULTIAPPEND and LITERAL+ (still UIDPLUS): one APPEND at a time, waiting for `+`.
const NO_MULTIAPPEND: &str = "imap_capability = IMAP4rev1 UIDPLUS";

async fn refused_message_in_batch(extra: &[&str]) {
    let mut builder = Dovecot::builder();
    for conf in extra {
        builder = builder.extra_config(conf);
    }
    let dc = builder.start();
    let (user, pw) = dc.fresh_user("refuse");
    let mut w = writer(&dc, &user, &pw).await;
    let big = MessageBuilder::new().pad_to(20_000).build();
    let items = vec![
        item(&["\\Seen"], None, small(0)),
        item(&[], None, big),
        item(&[], Some("not a date"), small(9)),
        item(&["$Label1"], None, small(2)),
    ];
    let results = w.append_batch(&wn("INBOX"), &items).await.expect("batch");
    assert_eq!(results.len(), 4);
    assert_eq!(results[0], Ok(Some(1)), "{results:?}");
    let refused = results[1].clone().unwrap_err();
    assert!(refused.contains("[LIMIT]"), "{refused}");
    assert!(results[2].clone().unwrap_err().contains("not a date"));
    assert_eq!(results[3], Ok(Some(2)), "{results:?}");

    // A folder that does not exist refuses every message, each with the server's words.
    let results = w
        .append_batch(
            &wn("Nope"),
            &[item(&[], None, small(7)), item(&[], None, small(8))],
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    for r in &results {
        assert!(
            r.clone().unwrap_err().contains("[TRYCREATE]"),
            "{results:?}"
        );
    }

    // The session is still in step: another batch goes in.
    let results = w
        .append_batch(
            &wn("INBOX"),
            &[item(&[], None, small(3)), item(&[], None, small(4))],
        )
        .await
        .unwrap();
    assert_eq!(results, vec![Ok(Some(3)), Ok(Some(4))]);
    w.logout().await.unwrap();

    let msgs = RawImap::login(dc.port(), &user, &pw).fetch_all("INBOX");
    let bodies: Vec<&Vec<u8>> = msgs.iter().map(|m| &m.body).collect();
    assert_eq!(
        bodies,
        vec![&small(0), &small(2), &small(3), &small(4)],
        "{msgs:?}"
    );
    assert_eq!(msgs[1].flags, vec!["$Label1"]);
}

#[tokio::test]
async fn refused_message_gets_its_own_error_with_multiappend() {
    refused_message_in_batch(&[SIZE_LIMIT]).await;
}

#[tokio::test]
async fn refused_message_gets_its_own_error_with_synchronizing_literals() {
    refused_message_in_batch(&[SIZE_LIMIT, NO_MULTIAPPEND]).await;
}

#[tokio::test]
async fn without_multiappend_a_batch_still_appends_in_order() {
    let dc = Dovecot::builder()
        .extra_config("imap_capability = IMAP4rev1 UIDPLUS LITERAL+")
        .start();
    let (user, pw) = dc.fresh_user("plus");
    let mut w = writer(&dc, &user, &pw).await;
    assert!(!w.capabilities().has("MULTIAPPEND"));
    let items: Vec<AppendItem> = (0..50).map(|i| item(&["\\Seen"], None, small(i))).collect();
    let results = w.append_batch(&wn("INBOX"), &items).await.unwrap();
    let want: Vec<_> = (1..=50).map(|u| Ok(Some(u))).collect();
    assert_eq!(results, want);
    let msgs = RawImap::login(dc.port(), &user, &pw).fetch_all("INBOX");
    assert!(msgs
        .iter()
        .zip(&items)
        .all(|(m, i)| m.body[..] == i.body[..]));
}

#[tokio::test]
async fn appends_two_thousand_messages_quickly() {
    let dc = Dovecot::builder().mail_on_tmpfs(true).start();
    let (user, pw) = dc.fresh_user("speed");
    let mut w = writer(&dc, &user, &pw).await;
    let items: Vec<AppendItem> = (0..2000)
        .map(|i| {
            item(
                &["\\Seen", "$Label1"],
                Some("2001-01-01T10:00:00+02:00"),
                MessageBuilder::new()
                    .subject(&format!("speed {i}"))
                    .pad_to(3000)
                    .build(),
            )
        })
        .collect();
    let t = Instant::now();
    let mut uids = Vec::new();
    for batch in items.chunks(200) {
        for r in w.append_batch(&wn("INBOX"), batch).await.unwrap() {
            uids.push(r.unwrap().unwrap());
        }
    }
    let took = t.elapsed();
    let rate = items.len() as f64 / took.as_secs_f64();
    eprintln!(
        "append_batch: {} messages in {took:?} = {rate:.0} messages/s ({})",
        items.len(),
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    );
    assert_eq!(uids, (1..=2000).collect::<Vec<u32>>());
    assert!(
        took < Duration::from_secs(20),
        "2,000 appends took {took:?}"
    );
    w.logout().await.unwrap();
    let msgs = RawImap::login(dc.port(), &user, &pw).fetch_all("INBOX");
    assert_eq!(msgs.len(), 2000);
    assert!(msgs
        .iter()
        .zip(&items)
        .all(|(m, i)| m.body[..] == i.body[..]));
}
