//! Every byte mailshift writes to stdout and stderr goes through here, for two reasons:
//!
//! - A closed stdout (`mailshift show plan.json | head -2`) is a clean end, not a panic:
//!   the reader has what it wanted, so the process exits 0 (as ripgrep does). A closed
//!   stderr is ignored.
//! - Text from servers and messages (subjects, display names, folder names, server
//!   responses) may hold terminal control sequences that would retitle the window or erase
//!   lines. Control characters are shown escaped (`\u{1b}`); renderers additionally
//!   escape line breaks inside such fields with [`escape_field`]. JSON output needs
//!   nothing: serde_json escapes control characters in strings.
//!
//! Colour is a property of the printer value handed to each command, not a global flag;
//! it is applied after escaping, so only our own styling reaches the terminal.

use std::borrow::Cow;
use std::io::{self, Write};

/// Where data and diagnostics go, and whether each gets colour.
#[derive(Debug, Clone, Copy, Default)]
pub struct Printer {
    stdout_color: bool,
    stderr_color: bool,
}

impl Printer {
    pub fn new(stdout_color: bool, stderr_color: bool) -> Printer {
        Printer {
            stdout_color,
            stderr_color,
        }
    }

    /// Whether diagnostics on stderr are coloured.
    pub fn stderr_color(&self) -> bool {
        self.stderr_color
    }

    /// Data on stdout, control characters escaped.
    pub fn out(&self, text: &str) {
        write_stdout(escape_controls(text).as_bytes());
    }

    /// Data on stdout, escaped, then styled by `style` when stdout has colour.
    pub fn out_styled(&self, text: &str, style: impl Fn(&str) -> String) {
        let escaped = escape_controls(text);
        if self.stdout_color {
            write_stdout(style(&escaped).as_bytes());
        } else {
            write_stdout(escaped.as_bytes());
        }
    }

    /// Bytes on stdout exactly as given (a JSON document, shell completions): their
    /// producer already escaped what needs it.
    pub fn out_raw(&self, bytes: &[u8]) {
        write_stdout(bytes);
    }

    /// Diagnostics on stderr, control characters escaped.
    pub fn err(&self, text: &str) {
        let mut stderr = io::stderr().lock();
        // Nowhere left to report a failing stderr.
        let _ = stderr.write_all(escape_controls(text).as_bytes());
        let _ = stderr.flush();
    }

    /// A writer for stdout that follows the same broken-pipe rule (for generators that
    /// want an `io::Write`).
    pub fn stdout_writer(&self) -> StdoutWriter {
        StdoutWriter
    }
}

/// `io::Write` on stdout; a closed pipe ends the process cleanly.
#[derive(Debug)]
pub struct StdoutWriter;

impl Write for StdoutWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_stdout(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Err(e) = io::stdout().flush() {
            on_stdout_error(e);
        }
        Ok(())
    }
}

fn write_stdout(bytes: &[u8]) {
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        on_stdout_error(e);
    }
}

/// A reader that stopped reading is a clean end; any other stdout failure is reported once
/// on stderr and ends the run with status 1 (the data did not reach its destination).
fn on_stdout_error(e: io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    let _ = writeln!(io::stderr(), "error: cannot write to stdout: {e}");
    std::process::exit(1);
}

/// Control characters other than line feed and tab, and the Unicode bidirectional
/// overrides, shown as `\u{..}` escapes.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| c != '\n' && c != '\t' && needs_escape(c))
}

/// Like [`escape_controls`], and line breaks too: for one field (a subject, a folder name,
/// a server's answer) that must stay on its line.
pub(crate) fn escape_field(text: &str) -> Cow<'_, str> {
    escape_where(text, needs_escape)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape_where(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escape(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sequences_are_shown_not_obeyed() {
        let subject = "invoice\u{1b}]0;owned\u{7}\u{1b}[2K";
        assert_eq!(
            escape_controls(subject),
            "invoice\\u{1b}]0;owned\\u{7}\\u{1b}[2K"
        );
        assert_eq!(escape_field("a\nb\r"), "a\\u{a}b\\u{d}");
        assert_eq!(escape_controls("a\nb\tc"), "a\nb\tc");
        assert_eq!(escape_field("\u{0}"), "\\u{0}");
        assert_eq!(escape_field("abc\u{202e}txt"), "abc\\u{202e}txt");
        assert!(matches!(escape_field("日本語 plain"), Cow::Borrowed(_)));
    }
}
