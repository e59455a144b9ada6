//! A tiny authoritative DNS server on 127.0.0.1 (UDP) for `cutover` tests and the demo:
//! it answers MX questions for the domains it was given (with their TTL), NODATA for other
//! types of a known domain and NXDOMAIN for anything else. Answers are encoded by hand
//! (RFC 1035 §4.1); the records can be changed while it runs. Stopped on drop.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One MX record: preference and exchange host.
pub(super) type Mx = (u16, String);

#[derive(Default)]
struct Zone {
    /// Lower-cased domain → (MX records, TTL).
    domains: BTreeMap<String, (Vec<Mx>, u32)>,
    queries: u64,
}

pub(crate) struct DnsServer {
    port: u16,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    pub(crate) fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port for the DNS server");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set a read timeout");
        let port = socket.local_addr().expect("local address").port();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let zone = zone.clone();
            let stop = stop.clone();
            std::thread::spawn(move || serve(socket, &zone, &stop))
        };
        DnsServer {
            port,
            zone,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, for `[cutover] nameservers`.
    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sets (replaces) the MX records of `domain`, all with `ttl`.
    pub(crate) fn set_mx(&self, domain: &str, records: &[(u16, &str)], ttl: u32) {
        let records = records.iter().map(|(p, h)| (*p, h.to_string())).collect();
        self.zone
            .lock()
            .unwrap()
            .domains
            .insert(domain.to_ascii_lowercase(), (records, ttl));
    }

    /// How many questions it answered.
    pub(crate) fn queries(&self) -> u64 {
        self.zone.lock().unwrap().queries
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: UdpSocket, zone: &Mutex<Zone>, stop: &AtomicBool) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let mut zone = zone.lock().unwrap();
        zone.queries += 1;
        if let Some(answer) = answer(&buf[..n], &zone) {
            let _ = socket.send_to(&answer, peer);
        }
    }
}

/// The answer to one query; `None` for what is not a plain query.
fn answer(query: &[u8], zone: &Zone) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    // The question: labels, then QTYPE and QCLASS.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question = &query[12..i + 4];
    let name = labels.join(".");

    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[0..2]); // ID
    let rd = query[2] & 0x01;
    let known = zone.domains.get(&name);
    let rcode = if known.is_some() { 0 } else { 3 }; // NXDOMAIN
    out.push(0x84 | rd); // QR, AA, RD copied
    out.push(0x80 | rcode); // RA
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    let answers: &[Mx] = match known {
        Some((records, _)) if qtype == 15 => records,
        _ => &[],
    };
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes()); // ANCOUNT
    out.extend_from_slice(&0u16.to_be_bytes()); // NSCOUNT
    out.extend_from_slice(&0u16.to_be_bytes()); // ARCOUNT
    out.extend_from_slice(question);
    let ttl = known.map_or(0, |(_, ttl)| *ttl);
    for (preference, exchange) in answers {
        out.extend_from_slice(&[0xC0, 0x0C]); // the name in the question
        out.extend_from_slice(&15u16.to_be_bytes()); // MX
        out.extend_from_slice(&1u16.to_be_bytes()); // IN
        out.extend_from_slice(&ttl.to_be_bytes());
        let mut rdata = preference.to_be_bytes().to_vec();
        for label in exchange.trim_end_matches('.').split('.') {
            rdata.push(label.len() as u8);
            rdata.extend_from_slice(label.as_bytes());
        }
        rdata.push(0);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}
