//! A test that keeps the module graph one-directional (ARCHITECTURE.md "Module rules"):
//! every top-level module has a layer, and a module may import only modules of a lower
//! layer (or its own). The planner additionally stays pure: no IMAP, no tokio, nothing
//! async. Only `src/imap/` may name async-imap, imap-proto or tokio-rustls.
//!
//! The check reads the source files, so it also fails for a module that is new and not
//! yet placed in [`LAYERS`]: place it where its imports say it belongs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layer of each top-level module; lower numbers are imported by higher ones, never the
/// reverse. Equal numbers may not import each other either (siblings stay independent).
pub(crate) const LAYERS: &[(&str, u8)] = &[
    // The vocabulary, the codecs and the output plumbing: leaves.
    ("model", 0),
    ("message", 0),
    ("mutf7", 0),
    ("printer", 0),
    ("identity", 1),
    ("diagnostics", 1),
    ("logging", 1),
    // Settings (config, CSV, secrets).
    ("settings", 2),
    // The wire.
    ("imap", 3),
    // Reading servers into data.
    ("inventory", 4),
    // Pure planning.
    ("plan", 5),
    ("planfile", 6),
    ("report", 6),
    // What runs remember (the ledger), read by plan commands, written by apply.
    ("state", 6),
    // Cutover decisions and their observations (DNS, state files); no IMAP.
    ("cutover", 6),
    // Merging report files into the fleet view (pure).
    ("fleet", 7),
    // Formatting.
    ("render", 8),
    ("progress", 9),
    // The only writer.
    ("apply", 10),
    // The command line.
    ("cli", 11),
    ("commands", 12),
];

/// Crate paths the planner must not use: it is pure data in, data out.
const IMPURE_FOR_PLAN: &[&str] = &[
    "crate::imap",
    "crate::apply",
    "crate::commands",
    "crate::printer",
    "tokio",
    "futures",
    "async_imap",
    "imap_proto",
    "async fn",
    ".await",
    "std::fs",
    "std::net",
    "std::io::stdout",
    "std::io::stderr",
];

/// The network libraries that only `src/imap/` may name.
const WIRE_CRATES: &[&str] = &["async_imap::", "imap_proto::", "tokio_rustls::"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/plan/mapping.rs` → `plan`).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src_dir()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    match name {
        "lib" | "main" | "layering" | "docs_tests" => None,
        other => Some(other.to_string()),
    }
}

/// Source text without `//` comments and without the insides of string literals (doc
/// comments and messages mention other modules freely).
fn code_of(path: &Path) -> String {
    strip_comments_and_strings(&std::fs::read_to_string(path).expect("source is readable"))
}

fn strip_comments_and_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut escaped = false;
        let mut prev = ' ';
        for c in line.chars() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                    out.push('"');
                }
                continue;
            }
            if c == '/' && prev == '/' {
                out.pop();
                break;
            }
            if c == '"' && prev != '\'' {
                in_string = true;
            }
            out.push(c);
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// The top-level modules named as `crate::NAME` in `code`.
fn crate_imports(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
        rest = after;
    }
    out
}

#[test]
fn no_module_imports_a_higher_or_sibling_layer() {
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let Some(&own) = layers.get(module.as_str()) else {
            problems.push(format!(
                "module `{module}` has no layer: add it to LAYERS in src/layering.rs"
            ));
            continue;
        };
        for import in crate_imports(&code_of(file)) {
            if import == module {
                continue;
            }
            match layers.get(import.as_str()) {
                Some(&theirs) if theirs < own => {}
                Some(&theirs) => problems.push(format!(
                    "{}: `{module}` (layer {own}) imports `{import}` (layer {theirs})",
                    file.display()
                )),
                // Items defined in lib.rs itself (`crate::Outcome`, `crate::run`).
                None => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_planner_is_pure() {
    let mut files = Vec::new();
    rust_files(&src_dir().join("plan"), &mut files);
    assert!(!files.is_empty());
    let mut problems = Vec::new();
    for file in &files {
        let code = code_of(file);
        for word in IMPURE_FOR_PLAN {
            if code.contains(word) {
                problems.push(format!("{} uses `{word}`", file.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_the_imap_module_names_the_wire_crates() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut problems = Vec::new();
    for file in &files {
        if matches!(module_of(file).as_deref(), Some("imap") | None) {
            continue;
        }
        let code = code_of(file);
        for word in WIRE_CRATES {
            if code.contains(word) {
                problems.push(format!("{} names `{word}`", file.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_a_violation() {
    // The scanner itself must find imports, or the tests above could never fail.
    assert_eq!(
        crate_imports("use crate::imap::Reader;\nlet x = crate::plan::plan(a);"),
        vec!["imap".to_string(), "plan".to_string()]
    );
    assert_eq!(
        strip_comments_and_strings("let a = \"crate::apply\"; // crate::imap\nb"),
        "let a = \"\"; \nb\n"
    );
    assert_eq!(
        module_of(&src_dir().join("plan/mapping.rs")).as_deref(),
        Some("plan")
    );
    assert_eq!(
        module_of(&src_dir().join("apply/batch.rs")).as_deref(),
        Some("apply")
    );
}
