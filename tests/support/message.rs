//! Test messages: RFC 5322 text with CRLF line ends, built from a few fields.

use std::sync::atomic::{AtomicU64, Ordering};

/// Builds a message; every field has a default, so `MessageBuilder::new().build()` is valid.
/// By default each message gets a process-unique Message-ID.
#[derive(Clone, Debug)]
pub(crate) struct MessageBuilder {
    from: String,
    to: String,
    subject: String,
    date: String,
    message_id: Option<String>,
    headers: Vec<String>,
    body: Vec<u8>,
    pad_to: Option<usize>,
}

impl Default for MessageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageBuilder {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        MessageBuilder {
            from: "Alice <alice@example.test>".into(),
            to: "Bob <bob@example.test>".into(),
            subject: format!("test message {n}"),
            date: "Mon, 01 Jan 2024 10:00:00 +0000".into(),
            message_id: Some(format!("<{n}.{}@mailshift.test>", std::process::id())),
            headers: Vec::new(),
            body: b"Hello.\r\n".to_vec(),
            pad_to: None,
        }
    }

    pub(crate) fn from(mut self, from: &str) -> Self {
        self.from = from.into();
        self
    }

    pub(crate) fn to(mut self, to: &str) -> Self {
        self.to = to.into();
        self
    }

    pub(crate) fn subject(mut self, subject: &str) -> Self {
        self.subject = subject.into();
        self
    }

    /// The `Date:` header (RFC 5322 form), e.g. `Tue, 02 Jan 2024 10:00:00 +0100`.
    pub(crate) fn date(mut self, date: &str) -> Self {
        self.date = date.into();
        self
    }

    /// `Some("<id@host>")` sets the Message-ID; `None` leaves the header out.
    pub(crate) fn message_id(mut self, id: Option<&str>) -> Self {
        self.message_id = id.map(str::to_string);
        self
    }

    /// An extra raw header line without CRLF, e.g. `X-Tag: 1`.
    pub(crate) fn header(mut self, line: &str) -> Self {
        self.headers.push(line.into());
        self
    }

    /// The body; bare LF line ends become CRLF, and a final CRLF is added if missing.
    pub(crate) fn body(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = to_crlf(body.as_ref());
        if !self.body.ends_with(b"\r\n") {
            self.body.extend_from_slice(b"\r\n");
        }
        self
    }

    /// The body exactly as given (for bare-LF, NUL or unterminated-line tests).
    pub(crate) fn body_raw(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = body.as_ref().to_vec();
        self
    }

    /// Append lines of `x` so the message is exactly `size` bytes (when that is at least
    /// 3 bytes more than without padding; never shrinks).
    pub(crate) fn pad_to(mut self, size: usize) -> Self {
        self.pad_to = Some(size);
        self
    }

    pub(crate) fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pad_to.unwrap_or(0).max(512));
        let mut line = |l: &str| {
            out.extend_from_slice(l.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        line(&format!("From: {}", self.from));
        line(&format!("To: {}", self.to));
        line(&format!("Subject: {}", self.subject));
        line(&format!("Date: {}", self.date));
        if let Some(id) = &self.message_id {
            line(&format!("Message-ID: {id}"));
        }
        line("MIME-Version: 1.0");
        line("Content-Type: text/plain; charset=utf-8");
        for h in &self.headers {
            line(h);
        }
        line("");
        out.extend_from_slice(&self.body);
        if let Some(size) = self.pad_to {
            let mut remaining = size.saturating_sub(out.len());
            if remaining >= 3 {
                while remaining > 82 {
                    out.extend_from_slice(&[b'x'; 78]);
                    out.extend_from_slice(b"\r\n");
                    remaining -= 80;
                }
                out.extend(std::iter::repeat_n(b'x', remaining - 2));
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }
}

/// Bare `\n` -> `\r\n`; existing `\r\n` kept.
pub(crate) fn to_crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    for (i, &b) in text.iter().enumerate() {
        if b == b'\n' && (i == 0 || text[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_crlf_with_unique_ids_and_exact_padding() {
        let a = MessageBuilder::new().body("one\ntwo\r\nthree").build();
        let b = MessageBuilder::new().build();
        assert!(!a.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        assert!(a.ends_with(b"one\r\ntwo\r\nthree\r\n"));
        assert_ne!(a, b, "Message-IDs must differ");
        for size in [400, 1000, 12345, 100_000] {
            assert_eq!(MessageBuilder::new().pad_to(size).build().len(), size);
        }
        let none = MessageBuilder::new().message_id(None).build();
        assert!(!String::from_utf8_lossy(&none).contains("Message-ID"));
    }
}
