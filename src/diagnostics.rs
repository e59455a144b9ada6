//! Errors for people, printed one way everywhere: the message, each cause once, then —
//! after a blank line — the hints (the style of uv's STYLE.md, see ARCHITECTURE.md
//! "Errors and hints"):
//!
//! ```text
//! error: cannot read `migration.toml`
//!   caused by: No such file or directory (os error 2)
//!
//! hint: run mailshift in the directory that holds it, or pass `--config FILE`
//! ```
//!
//! Hints are never part of an error's `Display`: error types answer them through
//! [`HasHint`], and the top level finds them in the chain with a lookup function (the
//! command layer owns it, since only it knows every error type). A message never repeats
//! its cause: a variant that returns a `source` does not also print it.

use std::error::Error;
use std::fmt;

/// An error that may know how to fix it.
pub trait HasHint {
    /// What the user can do about it, when that is knowable; one or more lines, without
    /// the `hint: ` prefix.
    fn hint(&self) -> Option<String>;
}

/// Finds the hint of one error in a chain (None when its type has none or is unknown).
pub type HintLookup = fn(&(dyn Error + 'static)) -> Option<String>;

/// A message with its hint, for errors raised where no typed error exists (the command
/// layer's own checks). `Display` is the message alone.
#[derive(Debug)]
pub struct Hinted {
    message: String,
    hint: String,
}

impl Hinted {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Hinted {
        Hinted {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Hinted {}

impl HasHint for Hinted {
    fn hint(&self) -> Option<String> {
        Some(self.hint.clone())
    }
}

/// An error taken apart for printing: message, causes (outermost first), hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub causes: Vec<String>,
    pub hints: Vec<String>,
}

impl Diagnostic {
    /// Walks `error` and its sources; hints are collected outermost first, each once.
    pub fn of(error: &(dyn Error + 'static), lookup: HintLookup) -> Diagnostic {
        let mut chain = Vec::new();
        let mut next: Option<&(dyn Error + 'static)> = Some(error);
        while let Some(e) = next {
            chain.push(e);
            next = e.source();
        }
        Diagnostic::of_chain(chain, lookup)
    }

    /// Like [`Diagnostic::of`], for the top level's `anyhow` errors.
    pub fn of_anyhow(error: &anyhow::Error, lookup: HintLookup) -> Diagnostic {
        Diagnostic::of_chain(error.chain().collect(), lookup)
    }

    fn of_chain(chain: Vec<&(dyn Error + 'static)>, lookup: HintLookup) -> Diagnostic {
        let mut texts: Vec<String> = Vec::new();
        let mut hints: Vec<String> = Vec::new();
        for e in chain {
            let text = e.to_string();
            // A wrapper that prints its cause verbatim (`#[error(transparent)]`, anyhow
            // context equal to the cause) must not print it twice.
            if texts.last() != Some(&text) {
                texts.push(text);
            }
            if let Some(h) = lookup(e) {
                if !hints.contains(&h) {
                    hints.push(h);
                }
            }
        }
        let message = if texts.is_empty() {
            String::new()
        } else {
            texts.remove(0)
        };
        Diagnostic {
            message,
            causes: texts,
            hints,
        }
    }

    /// The block printed on stderr for a command that failed.
    pub fn render(&self) -> String {
        let mut out = format!("error: {}\n", indent_continuation(&self.message, "  "));
        for cause in &self.causes {
            out.push_str(&format!(
                "  caused by: {}\n",
                indent_continuation(cause, "    ")
            ));
        }
        for (i, hint) in self.hints.iter().enumerate() {
            if i == 0 {
                out.push('\n');
            }
            out.push_str(&format!("hint: {}\n", indent_continuation(hint, "      ")));
        }
        out
    }

    /// The message and its causes on one line (`a: b: c`), for an account's error shown
    /// inside a plan or a table; the hints go separately.
    pub fn one_line(&self) -> String {
        let mut out = self.message.clone();
        for cause in &self.causes {
            out.push_str(": ");
            out.push_str(cause);
        }
        out
    }

    /// The hints as one text (several joined by newlines), if any.
    pub fn hint_text(&self) -> Option<String> {
        if self.hints.is_empty() {
            None
        } else {
            Some(self.hints.join("\n"))
        }
    }
}

/// Indents every line after the first, so that a multi-line message stays one block.
fn indent_continuation(text: &str, indent: &str) -> String {
    text.replace('\n', &format!("\n{indent}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot read `{file}`")]
        Read {
            file: String,
            #[source]
            source: std::io::Error,
        },
    }

    impl HasHint for Outer {
        fn hint(&self) -> Option<String> {
            Some("pass `--config FILE`".into())
        }
    }

    fn lookup(e: &(dyn Error + 'static)) -> Option<String> {
        if let Some(e) = e.downcast_ref::<Outer>() {
            return e.hint();
        }
        e.downcast_ref::<Hinted>().and_then(HasHint::hint)
    }

    fn missing() -> Outer {
        Outer::Read {
            file: "migration.toml".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "No such file"),
        }
    }

    #[test]
    fn cause_once_then_a_blank_line_and_the_hint() {
        let d = Diagnostic::of(&missing(), lookup);
        assert_eq!(
            d.render(),
            "error: cannot read `migration.toml`\n  caused by: No such file\n\nhint: pass `--config FILE`\n"
        );
        assert_eq!(d.one_line(), "cannot read `migration.toml`: No such file");
    }

    #[test]
    fn anyhow_context_and_hinted_messages() {
        let e = anyhow::Error::new(Hinted::new("needs confirmation", "add `--auto-approve`"));
        let d = Diagnostic::of_anyhow(&e, lookup);
        assert_eq!(
            d.render(),
            "error: needs confirmation\n\nhint: add `--auto-approve`\n"
        );
        let e = anyhow::Error::new(missing()).context("loading the settings");
        let d = Diagnostic::of_anyhow(&e, lookup);
        assert_eq!(d.message, "loading the settings");
        assert_eq!(d.causes.len(), 2);
        assert_eq!(d.hints, vec!["pass `--config FILE`".to_string()]);
    }

    #[test]
    fn no_hint_no_blank_line() {
        let e = anyhow::anyhow!("boom");
        assert_eq!(Diagnostic::of_anyhow(&e, lookup).render(), "error: boom\n");
    }
}
