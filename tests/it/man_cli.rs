//! `mailshift man`: the man page, generated from the clap definitions, is valid roff with
//! every subcommand and global flag, and is what `README.md` tells to install.

use crate::scenario::run_mailshift;

#[test]
fn man_page_lists_every_subcommand_and_global_flag() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_mailshift(dir.path(), &["man"]);
    assert_eq!(r.status, 0, "{r}");
    let page = &r.stdout;
    assert!(page.contains(".TH mailshift 1"), "{page}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no `{section}`:\n{page}");
    }
    for sub in [
        "plan",
        "apply",
        "check",
        "show",
        "report",
        "cutover",
        "completions",
    ] {
        assert!(
            page.contains(&format!("mailshift\\-{sub}(1)")),
            "subcommand `{sub}` missing:\n{page}"
        );
    }
    for flag in [
        "config",
        "account",
        "shard",
        "verbose",
        "quiet",
        "color",
        "log\\-file",
    ] {
        assert!(
            page.contains(&format!("\\-\\-{flag}")),
            "`--{flag}` missing"
        );
    }
    // The generator itself is hidden from the page and from --help.
    assert!(!page.contains("mailshift\\-man(1)"), "{page}");
    let help = run_mailshift(dir.path(), &["--help"]);
    assert!(!help.stdout.contains(" man "), "{help}");
    // Every roff request line is well formed (a dot, then a known macro or escape).
    for line in page.lines().filter(|l| l.starts_with('.')) {
        let request = line.split_whitespace().next().unwrap();
        assert!(
            [".TH", ".SH", ".TP", ".br", ".ie", ".el", ".PP", ".RS", ".RE", ".IP", ".B", ".I"]
                .contains(&request),
            "unexpected roff request `{line}`"
        );
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains("mailshift man > /usr/local/share/man/man1/mailshift.1"),
        "README tells how to install the man page"
    );
}
