//! Tests that keep `docs/` true to the code (ARCHITECTURE.md, "Where tests go"): the pages
//! describe the fixed interface, and these tests fail, naming the page to update, when a
//! subcommand, a flag, a config key, an exit status, a JSON field or the `Plan:` line
//! exists in the code and not in the docs (or the other way round, where that can be told).
//!
//! The lists come from the code itself: clap's command tree, the config parser's own
//! "unknown field" errors (so a key added to a serde struct is found without a list
//! here), `Outcome::exit_code`, serialised documents and the serialised structs' fields.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::Outcome;

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(repo_file(name)).unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
}

/// The sections of a Markdown page: (heading line, text up to the next heading).
fn sections(page: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_code = false;
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('#') {
            out.push((line.to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// The text of every section whose heading contains `marker`, or `None`.
fn section_with(page: &str, marker: &str) -> Option<String> {
    let found: Vec<String> = sections(page)
        .into_iter()
        .filter(|(heading, _)| heading.contains(marker))
        .map(|(_, body)| body)
        .collect();
    (!found.is_empty()).then(|| found.concat())
}

/// Whether `word` occurs in `text` with no letter, digit, `-` or `_` right before or after.
fn contains_word(text: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

fn assert_no_problems(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "the docs and the code disagree:\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// docs/commands.md

/// Checks one argument of a command against the text of its section.
fn check_arg(page: &str, section: &str, owner: &str, arg: &clap::Arg, problems: &mut Vec<String>) {
    let id = arg.get_id().as_str();
    if matches!(id, "help" | "version") || arg.is_hide_set() {
        return;
    }
    let mut names = Vec::new();
    if let Some(long) = arg.get_long() {
        names.push(format!("--{long}"));
        if let Some(short) = arg.get_short() {
            names.push(format!("-{short}"));
        }
    } else {
        // A positional argument: its value name, as `--help` shows it.
        let shown = arg
            .get_value_names()
            .and_then(|v| v.first().map(|s| s.to_string()))
            .unwrap_or_else(|| id.to_uppercase());
        names.push(shown);
    }
    for name in names {
        if !contains_word(section, &name) {
            problems.push(format!(
                "{page}: `{name}` of {owner} is not documented: describe it in that section"
            ));
        }
    }
    let values = if arg.get_action().takes_values() {
        arg.get_possible_values()
    } else {
        Vec::new()
    };
    for value in values {
        if value.is_hide_set() {
            continue;
        }
        if !contains_word(section, value.get_name()) {
            problems.push(format!(
                "{page}: value `{}` of `{}` ({owner}) is not documented: list it in that section",
                value.get_name(),
                arg.get_long().map_or(id.to_string(), |l| format!("--{l}")),
            ));
        }
    }
}

#[test]
fn every_subcommand_and_flag_is_in_docs_commands_md() {
    const PAGE: &str = "docs/commands.md";
    let page = read(PAGE);
    let cli = Cli::command();
    let mut problems = Vec::new();

    match section_with(&page, "Global flags") {
        None => problems.push(format!("{PAGE}: no `## Global flags` section")),
        Some(section) => {
            for arg in cli.get_arguments() {
                check_arg(PAGE, &section, "the global flags", arg, &mut problems);
            }
        }
    }

    let mut names = BTreeSet::new();
    for sub in cli.get_subcommands() {
        let name = sub.get_name();
        if name == "help" {
            continue;
        }
        names.insert(name.to_string());
        let heading = format!("`mailshift {name}`");
        let Some(section) = section_with(&page, &heading) else {
            problems.push(format!(
                "{PAGE}: subcommand `{name}` has no section: add a `## {heading}` section \
                 with its arguments and flags"
            ));
            continue;
        };
        for arg in sub.get_arguments() {
            if arg.is_global_set() {
                continue;
            }
            check_arg(
                PAGE,
                &section,
                &format!("`mailshift {name}`"),
                arg,
                &mut problems,
            );
        }
    }

    // And no section for a subcommand that does not exist (any more).
    for (heading, _) in sections(&page) {
        if let Some(rest) = heading.strip_prefix("## `mailshift ") {
            let name = rest.trim_end_matches('`');
            if !names.contains(name) {
                problems.push(format!(
                    "{PAGE}: documents `mailshift {name}`, which is not a subcommand"
                ));
            }
        }
    }
    assert_no_problems(problems);
}

// ---------------------------------------------------------------------------------------
// docs/config.md

const PROBE_KEY: &str = "zzz-docs-probe";

/// The keys the config parser accepts in `table` (dotted; empty for the top level), asked
/// of the parser itself: a config with an unknown key in that table is refused with
/// "unknown field ..., expected one of `a`, `b`". `None` when the table is not a struct
/// of fixed keys (a free-form table such as `[folders.rename]`, or not a table at all).
fn accepted_keys(dir: &Path, example: &str, table: &str) -> Option<Vec<String>> {
    let probe = format!("{PROBE_KEY} = 1\n");
    let text = if table.is_empty() {
        format!("{probe}{example}")
    } else {
        let header = format!("[{table}]");
        let mut out = String::new();
        let mut inserted = false;
        for line in example.lines() {
            out.push_str(line);
            out.push('\n');
            if !inserted && line.trim() == header {
                out.push_str(&probe);
                inserted = true;
            }
        }
        if !inserted {
            out.push_str(&format!("\n{header}\n{probe}"));
        }
        out
    };
    let path = dir.join(format!("probe-{}.toml", table.replace('.', "-")));
    std::fs::write(&path, text).expect("temp dir is writable");
    let error = match crate::settings::load(&path, &crate::settings::Selection::default()) {
        Ok(_) => return None,
        Err(e) => e.to_string(),
    };
    if !error.contains(&format!("unknown field `{PROBE_KEY}`")) {
        return None;
    }
    let expected = match error.split_once("expected") {
        Some((_, rest)) => rest,
        // serde: "unknown field `x`, there are no fields".
        None => return Some(Vec::new()),
    };
    Some(
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// (table, key) pairs written in migration.toml.example, also the commented-out ones
/// (`# port = 993`, `# [source.admin]`).
fn example_keys(example: &str) -> Vec<(String, String)> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in example.lines() {
        let l = line.strip_prefix('#').unwrap_or(line);
        let l = l.strip_prefix(' ').unwrap_or(l);
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            if name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-' || c == '.')
            {
                table = name.to_string();
            }
            continue;
        }
        let Some((key, _)) = l.split_once(" = ") else {
            continue;
        };
        let plain = key.starts_with(|c: char| c.is_ascii_lowercase())
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if plain && table != "folders.rename" {
            out.push((table.clone(), key.to_string()));
        }
    }
    out
}

#[test]
fn every_config_key_is_in_docs_config_md() {
    const PAGE: &str = "docs/config.md";
    let page = read(PAGE);
    let example = read("migration.toml.example");
    let dir = tempfile::tempdir().unwrap();

    // Walk the parser's tables: the top level, each table, each struct sub-table.
    let mut pairs: BTreeSet<(String, String)> = BTreeSet::new();
    let mut tables: BTreeSet<String> = BTreeSet::new();
    let top = accepted_keys(dir.path(), &example, "")
        .expect("the top level of the config is a table of fixed keys");
    assert!(
        top.iter().any(|k| k == "source"),
        "probing the parser found no `source` table: {top:?}"
    );
    let mut queue: Vec<String> = top.clone();
    for key in &top {
        tables.insert(key.clone());
    }
    while let Some(table) = queue.pop() {
        let Some(keys) = accepted_keys(dir.path(), &example, &table) else {
            continue;
        };
        for key in keys {
            pairs.insert((table.clone(), key.clone()));
            let sub = format!("{table}.{key}");
            if accepted_keys(dir.path(), &example, &sub).is_some() {
                tables.insert(sub.clone());
                queue.push(sub);
            }
        }
    }
    assert!(
        pairs.contains(&("source".into(), "host".into()))
            && pairs.contains(&("limits".into(), "idle-timeout".into())),
        "probing the parser did not find known keys: {pairs:?}"
    );
    for (table, key) in example_keys(&example) {
        if !table.is_empty() {
            pairs.insert((table, key));
        }
    }

    let mut problems = Vec::new();
    for table in &tables {
        if section_with(&page, &format!("`[{table}]`")).is_none() {
            problems.push(format!(
                "{PAGE}: table `[{table}]` has no section: add a heading with `[{table}]`"
            ));
        }
    }
    for (table, key) in &pairs {
        let Some(section) = section_with(&page, &format!("`[{table}]`")) else {
            continue;
        };
        if !section.contains(&format!("`{key}`")) {
            problems.push(format!(
                "{PAGE}: key `{key}` of `[{table}]` is not documented: add it (default and \
                 meaning) to the `[{table}]` section"
            ));
        }
    }
    assert_no_problems(problems);
}

// ---------------------------------------------------------------------------------------
// docs/exit-status.md

/// Every outcome. The match below stops compiling when a variant is added: add it here
/// and to docs/exit-status.md.
const OUTCOMES: [Outcome; 5] = [
    Outcome::Success,
    Outcome::ChangesPending,
    Outcome::Failed,
    Outcome::Interrupted,
    Outcome::Terminated,
];

fn _every_outcome_is_listed(o: Outcome) {
    match o {
        Outcome::Success
        | Outcome::ChangesPending
        | Outcome::Failed
        | Outcome::Interrupted
        | Outcome::Terminated => {}
    }
}

fn status_number(code: ExitCode) -> u8 {
    (0..=u8::MAX)
        .find(|n| ExitCode::from(*n) == code)
        .expect("an exit code in 0..=255")
}

#[test]
fn exit_statuses_in_docs_exit_status_md_match_the_code() {
    const PAGE: &str = "docs/exit-status.md";
    let page = read(PAGE);
    // The rows of the table: `| 130 | interrupted ... |`.
    let documented: BTreeSet<u8> = page
        .lines()
        .filter_map(|l| l.strip_prefix('|'))
        .filter_map(|l| l.split('|').next())
        .filter_map(|cell| cell.trim().parse().ok())
        .collect();
    let produced: BTreeSet<u8> = OUTCOMES
        .iter()
        .map(|o| status_number(o.exit_code()))
        .collect();
    let mut problems = Vec::new();
    for o in OUTCOMES {
        let n = status_number(o.exit_code());
        if !documented.contains(&n) {
            problems.push(format!(
                "{PAGE}: `Outcome::{o:?}` exits {n}, which has no row in the table"
            ));
        }
    }
    for n in &documented {
        if !produced.contains(n) {
            problems.push(format!(
                "{PAGE}: the table lists status {n}, which no `Outcome` produces"
            ));
        }
    }
    assert_no_problems(problems);
    // The page promises clap's usage-error status 2 is remapped to 1.
    assert_eq!(
        crate::run(["mailshift", "--no-such-flag-for-docs-test"]),
        ExitCode::from(1),
        "{PAGE}: a usage error must exit 1"
    );
}

// ---------------------------------------------------------------------------------------
// docs/plan-output.md

#[test]
fn the_summary_line_examples_in_docs_plan_output_md_are_what_the_renderer_prints() {
    use crate::plan::Summary;
    use crate::render::text::summary_line;
    const PAGE: &str = "docs/plan-output.md";
    let page = read(PAGE);
    let examples = [
        summary_line(
            &Summary {
                folders_to_create: 1,
                messages_to_copy: 1216,
                bytes_to_copy: 89_443_532,
                already_present: 10_443,
                skipped: 4,
                ..Summary::default()
            },
            false,
        ),
        summary_line(
            &Summary {
                messages_to_copy: 1,
                ..Summary::default()
            },
            false,
        ),
        summary_line(&Summary::default(), false),
    ];
    let lines: BTreeSet<&str> = page.lines().map(str::trim).collect();
    let missing: Vec<String> = examples
        .iter()
        .filter(|e| !lines.contains(e.as_str()))
        .map(|e| format!("{PAGE}: the renderer prints `{e}`, which is not an example line there"))
        .collect();
    assert_no_problems(missing);
}

// ---------------------------------------------------------------------------------------
// docs/json.md

/// The serialised types documented in docs/json.md, each in a section whose heading
/// contains `(Type)`, and the file that defines it. A new type nested in the plan or the
/// report belongs here too.
const JSON_TYPES: &[(&str, &str)] = &[
    ("PlanFile", "src/planfile.rs"),
    ("AccountPlan", "src/plan/mod.rs"),
    ("FolderPlan", "src/plan/mod.rs"),
    ("SourceFolder", "src/plan/mod.rs"),
    ("FolderStatus", "src/model.rs"),
    ("MessageCopy", "src/plan/mod.rs"),
    ("SkippedMessage", "src/plan/mod.rs"),
    ("FlagUpdate", "src/plan/mod.rs"),
    ("IgnoredFolder", "src/plan/mod.rs"),
    ("LedgerEntry", "src/plan/account_wide.rs"),
    ("QuotaCheck", "src/plan/mod.rs"),
    ("Summary", "src/plan/mod.rs"),
    ("Report", "src/report.rs"),
    ("AccountReport", "src/report.rs"),
    ("FailedMessage", "src/report.rs"),
    ("VanishedMessage", "src/report.rs"),
    ("ReportSummary", "src/report.rs"),
    ("CutoverReport", "src/cutover.rs"),
    ("CutoverDomain", "src/cutover.rs"),
    ("MxHost", "src/cutover.rs"),
    ("CutoverAccount", "src/cutover.rs"),
];

/// Types whose serialised form is another struct (a hand-written `Serialize` through it).
const SERIALISED_AS: &[(&str, &str)] = &[("MessageCopy", "MessageCopyJson")];

/// The serialised field names of `struct name { ... }` in `file`, in declaration order,
/// `#[serde(rename = "...")]` applied, `#[serde(skip)]` left out. `None` when the file
/// has no such struct.
fn struct_fields(name: &str, file: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(repo_file(file)).ok()?;
    let mut lines = text.lines();
    let found = lines.by_ref().any(|l| {
        let l = l.trim_start();
        let l = l
            .strip_prefix("pub(crate) ")
            .or_else(|| l.strip_prefix("pub "))
            .unwrap_or(l);
        l.strip_prefix("struct ")
            .and_then(|r| r.strip_prefix(name))
            .is_some_and(|r| r.starts_with([' ', '{', '<']))
            && l.trim_end().ends_with('{')
    });
    if !found {
        return None;
    }
    let mut fields = Vec::new();
    let mut rename: Option<String> = None;
    let mut skip = false;
    for line in lines {
        let l = line.trim();
        if l.starts_with('}') {
            break;
        }
        if l.starts_with("#[serde(") {
            if l.contains("skip)") || l.contains("skip,") || l.contains("skip_serializing)") {
                skip = true;
            }
            if let Some(r) = l.split("rename = \"").nth(1) {
                rename = r.split('"').next().map(str::to_string);
            }
            continue;
        }
        if l.starts_with("//") || l.starts_with("#[") || l.is_empty() {
            continue;
        }
        let l = l
            .strip_prefix("pub(crate) ")
            .or_else(|| l.strip_prefix("pub "))
            .unwrap_or(l);
        if let Some((field, _)) = l.split_once(':') {
            let is_field = field
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if is_field && !skip {
                fields.push(rename.take().unwrap_or_else(|| field.to_string()));
            }
            rename = None;
            skip = false;
        }
    }
    Some(fields)
}

/// Every object key anywhere in a JSON value.
fn json_keys(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                json_keys(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_keys(v, out)),
        _ => {}
    }
}

#[test]
fn every_json_field_is_in_docs_json_md() {
    const PAGE: &str = "docs/json.md";
    let page = read(PAGE);
    let mut problems = Vec::new();

    for &(name, file) in JSON_TYPES {
        let shape = SERIALISED_AS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(name, |(_, s)| *s);
        let Some(fields) = struct_fields(shape, file) else {
            problems.push(format!(
                "struct `{name}` not found in {file}: update JSON_TYPES in src/docs_tests.rs"
            ));
            continue;
        };
        assert!(!fields.is_empty(), "no fields found in `{name}`");
        let Some(section) = section_with(&page, &format!("({name})")) else {
            problems.push(format!(
                "{PAGE}: no section for `{name}`: add one with `({name})` in its heading"
            ));
            continue;
        };
        for field in fields {
            if !section.contains(&format!("`{field}`")) {
                problems.push(format!(
                    "{PAGE}: field `{field}` of `{name}` ({file}) is not documented: add it \
                     to the `({name})` section"
                ));
            }
        }
    }

    // The documents as actually serialised (catches a serde rename the scan above missed).
    let plan = crate::planfile::PlanFile::new(
        "digest".into(),
        vec![crate::plan::AccountPlan::failed(
            "a",
            "b",
            "error".into(),
            Some("hint".into()),
        )],
    );
    let report =
        crate::report::Report::new(vec![crate::report::AccountReport::new("a", "b")], false);
    let mut keys = BTreeSet::new();
    json_keys(&serde_json::from_str(&plan.to_json()).unwrap(), &mut keys);
    json_keys(&serde_json::from_str(&report.to_json()).unwrap(), &mut keys);
    for key in keys {
        if !page.contains(&format!("`{key}`")) {
            problems.push(format!(
                "{PAGE}: the JSON field `{key}` is not documented: add it to its section"
            ));
        }
    }
    assert_no_problems(problems);
}

// ---------------------------------------------------------------------------------------
// ARCHITECTURE.md "Module rules"

/// The rows `| 3 | `imap` | ... |` of the layers table: (layer, module) pairs.
fn documented_layers(page: &str) -> BTreeSet<(u8, String)> {
    let mut out = BTreeSet::new();
    let Some(section) = section_with(page, "Module rules") else {
        return out;
    };
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // ["", "3", "`imap`", "the wire", ""]
        if cells.len() < 4 || !cells[0].is_empty() {
            continue;
        }
        let Ok(layer) = cells[1].parse::<u8>() else {
            continue;
        };
        for module in cells[2].split(',') {
            out.insert((layer, module.trim().trim_matches('`').to_string()));
        }
    }
    out
}

#[test]
fn the_layers_table_in_architecture_md_is_the_one_the_layering_test_enforces() {
    const PAGE: &str = "ARCHITECTURE.md";
    let documented = documented_layers(&read(PAGE));
    let enforced: BTreeSet<(u8, String)> = crate::layering::LAYERS
        .iter()
        .map(|(m, l)| (*l, m.to_string()))
        .collect();
    let mut problems = Vec::new();
    for (layer, module) in enforced.difference(&documented) {
        problems.push(format!(
            "{PAGE}: module `{module}` is on layer {layer} in src/layering.rs: update the \
             table under \"Module rules\""
        ));
    }
    for (layer, module) in documented.difference(&enforced) {
        problems.push(format!(
            "{PAGE}: the table under \"Module rules\" puts `{module}` on layer {layer}, \
             src/layering.rs does not"
        ));
    }
    assert_no_problems(problems);
}

#[test]
fn the_checkers_see_what_they_look_for() {
    // Without these the tests above could pass by finding nothing.
    let page = "# t\n## `[source]` and `[destination]`\n| `host` |\n### `[source.admin]`\n`user`\n";
    assert_eq!(sections(page).len(), 3);
    assert!(section_with(page, "`[destination]`")
        .unwrap()
        .contains("`host`"));
    assert!(!section_with(page, "`[source]`").unwrap().contains("`user`"));
    assert!(contains_word("`--out FILE`", "--out"));
    assert!(!contains_word("`--output`", "--out"));
    assert!(!contains_word("`--log-file`", "--log"));
    assert_eq!(
        example_keys("[a]\nx = 1\n# [b.c]\n# y-z = \"v\"\n#   not = this\n"),
        vec![
            ("a".to_string(), "x".to_string()),
            ("b.c".to_string(), "y-z".to_string())
        ]
    );
    let fields = struct_fields("AccountReport", "src/report.rs").expect("AccountReport is there");
    assert!(fields.iter().any(|f| f == "source_user"), "{fields:?}");
    assert!(fields.iter().any(|f| f == "seconds"), "{fields:?}");
    assert_eq!(status_number(Outcome::Interrupted.exit_code()), 130);
    assert_eq!(
        documented_layers(
            "## Module rules\n| layer | m |\n|---|---|\n| 3 | `imap` | w |\n| 6 | `a`, `b` | x |\n"
        ),
        [(3, "imap"), (6, "a"), (6, "b")]
            .iter()
            .map(|(l, m)| (*l, m.to_string()))
            .collect()
    );
}
