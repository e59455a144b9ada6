//! The accounts CSV: who moves where, with the passwords. It is the only file that holds
//! user secrets, so errors name a line and a column but never a cell's content (a CSV
//! without a header row would otherwise print a password from its first line).
//!
//! Two headers are accepted: ours (`source_user,source_password,destination_user,
//! destination_password`, any order, names case-insensitive) and the one of the Microsoft 365
//! IMAP migration batch (`EmailAddress,UserName,Password`).

use std::collections::HashMap;

use secrecy::SecretString;

use super::error::Problem;
use super::{Account, SettingsError};

const HEADER_HINT: &str = "the first line must be \
    `source_user,source_password,destination_user,destination_password` (any order), \
    or the Microsoft 365 header `EmailAddress,UserName,Password`";

/// Which column of the file holds what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    SourceUser,
    SourcePassword,
    DestinationUser,
    DestinationPassword,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Native,
    Microsoft365,
}

impl Column {
    /// The column's name as the file spells it, for messages.
    fn name(self, format: Format) -> &'static str {
        match (format, self) {
            (Format::Native, Column::SourceUser) => "source_user",
            (Format::Native, Column::SourcePassword) => "source_password",
            (Format::Native, Column::DestinationUser) => "destination_user",
            (Format::Native, Column::DestinationPassword) => "destination_password",
            (Format::Microsoft365, Column::SourceUser) => "UserName",
            (Format::Microsoft365, Column::SourcePassword) => "Password",
            (Format::Microsoft365, Column::DestinationUser) => "EmailAddress",
            // Not present in that format.
            (Format::Microsoft365, Column::DestinationPassword) => "destination_password",
        }
    }
}

/// Whether an admin login (or a bearer token) replaces the users' passwords on each side:
/// then the matching password column may be empty (or absent).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AdminLogins {
    pub source: bool,
    pub destination: bool,
}

struct Header {
    format: Format,
    columns: Vec<Column>,
}

/// Parses the CSV bytes. `file` is how the file is named in errors.
pub(crate) fn parse(
    bytes: &[u8],
    file: &str,
    admins: AdminLogins,
) -> Result<Vec<Account>, SettingsError> {
    let err = |line: usize, problem: Problem| SettingsError::Accounts {
        file: file.to_string(),
        line,
        message: problem.message,
        hint: problem.hint,
    };
    // Excel's "CSV UTF-8" starts with a byte order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);

    let mut header: Option<Header> = None;
    let mut accounts: Vec<Account> = Vec::new();
    let mut by_source: HashMap<String, usize> = HashMap::new();
    let mut by_destination: HashMap<String, usize> = HashMap::new();
    let mut record = csv::ByteRecord::new();
    let mut lines = LineCounter::new(bytes);
    loop {
        // csv errors are not displayed: some variants quote the record.
        let more = reader.read_byte_record(&mut record).map_err(|e| {
            let line = e.position().map_or(1, |p| lines.line_at(p.byte()));
            err(line, "this line is not valid CSV".into())
        })?;
        if !more {
            break;
        }
        let line = record.position().map_or(1, |p| lines.line_at(p.byte()));
        let Some(header) = &header else {
            header = Some(parse_header(&record, admins).map_err(|m| err(line, m))?);
            continue;
        };
        // Spreadsheets like to end a file with rows of empty cells.
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        if record.len() != header.columns.len() {
            return Err(err(
                line,
                Problem::hinted(
                    format!(
                        "{} fields, but the header has {}",
                        record.len(),
                        header.columns.len()
                    ),
                    "a value containing a comma must be quoted: `\"...\"`",
                ),
            ));
        }
        let mut cells: [Option<&str>; 4] = [None; 4];
        for (raw, column) in record.iter().zip(&header.columns) {
            let text = std::str::from_utf8(raw).map_err(|_| {
                err(
                    line,
                    Problem::hinted(
                        format!("column `{}` is not valid UTF-8", column.name(header.format)),
                        "save the file as UTF-8 (in Excel: \"CSV UTF-8\")",
                    ),
                )
            })?;
            cells[*column as usize] = Some(text);
        }
        let name = |c: Column| c.name(header.format);
        let source_user = cells[Column::SourceUser as usize].unwrap_or("").trim();
        if source_user.is_empty() {
            return Err(err(
                line,
                format!("`{}` is empty", name(Column::SourceUser)).into(),
            ));
        }
        let destination_user = match cells[Column::DestinationUser as usize].map(str::trim) {
            Some(d) if !d.is_empty() => d,
            _ => source_user,
        };
        // Passwords are never trimmed: a leading or trailing space may be part of one.
        let password = |column: Column, admin: bool, side: &str| match cells[column as usize] {
            Some(p) if !p.is_empty() => Ok(Some(SecretString::from(p.to_string()))),
            _ if admin => Ok(None),
            _ => Err(err(
                line,
                Problem::hinted(
                    format!("`{}` is empty", name(column)),
                    format!(
                        "fill it in, or configure `[{side}.admin]` to log in on each user's \
                         behalf (or `auth = \"xoauth2\"` with a `token-command`)"
                    ),
                ),
            )),
        };
        let source_password = password(Column::SourcePassword, admins.source, "source")?;
        let destination_password = password(
            Column::DestinationPassword,
            admins.destination,
            "destination",
        )?;

        if let Some(first) = by_source.insert(source_user.to_lowercase(), line) {
            return Err(err(
                line,
                Problem::hinted(
                    format!(
                        "`{}` is the same as on line {first} (compared case-insensitively)",
                        name(Column::SourceUser)
                    ),
                    "each account must appear once",
                ),
            ));
        }
        if let Some(first) = by_destination.insert(destination_user.to_lowercase(), line) {
            return Err(err(
                line,
                Problem::hinted(
                    format!(
                        "the destination user is the same as on line {first} (compared \
                         case-insensitively; an empty `{}` means the source user)",
                        name(Column::DestinationUser)
                    ),
                    "two accounts cannot be migrated into one mailbox",
                ),
            ));
        }
        accounts.push(Account {
            source_user: source_user.to_string(),
            source_password,
            destination_user: destination_user.to_string(),
            destination_password,
            line,
        });
    }
    if header.is_none() {
        return Err(err(1, Problem::hinted("the file is empty", HEADER_HINT)));
    }
    if accounts.is_empty() {
        return Err(err(
            1,
            Problem::hinted(
                "there is no account below the header",
                "add one line per mailbox",
            ),
        ));
    }
    Ok(accounts)
}

/// Turns record offsets into 1-based line numbers. Records come in file order, so the
/// newlines are counted once, from where the previous record was found: counting from the
/// start of the file for every record made loading quadratic in the number of rows
/// (20 s for 40,000 rows).
struct LineCounter<'a> {
    bytes: &'a [u8],
    /// Offset up to which newlines have been counted, and how many there were.
    counted_to: usize,
    newlines: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            counted_to: 0,
            newlines: 0,
        }
    }

    /// The line where the record at `offset` starts. csv's own line count skips the blank
    /// lines it drops, and its byte offset points at the first of them: step over them.
    /// An offset before the last one asked about (never the case for csv's records) is
    /// counted from the start again.
    fn line_at(&mut self, offset: u64) -> usize {
        let bytes = self.bytes;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let skipped = bytes[start..]
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        let end = start + skipped;
        if end < self.counted_to {
            self.counted_to = 0;
            self.newlines = 0;
        }
        self.newlines += bytes[self.counted_to..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.counted_to = end;
        self.newlines + 1
    }
}

/// Recognises the header row. Never puts a header cell into a message: when the header is
/// missing, the first line is an account with its password.
fn parse_header(record: &csv::ByteRecord, admins: AdminLogins) -> Result<Header, Problem> {
    let names: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase())
        .collect();
    let unknown = || Problem::hinted("the header row is missing or unknown", HEADER_HINT);

    let mut m365: Vec<&str> = names.iter().map(String::as_str).collect();
    m365.sort_unstable();
    if m365 == ["emailaddress", "password", "username"] {
        if !admins.destination {
            return Err(Problem::hinted(
                "the Microsoft 365 format (`EmailAddress,UserName,Password`) has no \
                 destination password",
                "configure `[destination.admin]` in the config file to log in on each user's \
                 behalf",
            ));
        }
        let columns = names
            .iter()
            .map(|n| match n.as_str() {
                "emailaddress" => Column::DestinationUser,
                "username" => Column::SourceUser,
                _ => Column::SourcePassword,
            })
            .collect();
        return Ok(Header {
            format: Format::Microsoft365,
            columns,
        });
    }

    let known = |n: &str| match n {
        "source_user" => Some(Column::SourceUser),
        "source_password" => Some(Column::SourcePassword),
        "destination_user" => Some(Column::DestinationUser),
        "destination_password" => Some(Column::DestinationPassword),
        _ => None,
    };
    if names.iter().all(|n| known(n).is_none()) {
        // A semicolon-separated export (Excel in many locales) reads as one field.
        if names.len() == 1 && names[0].split(';').any(|n| known(n.trim()).is_some()) {
            return Err(Problem::hinted(
                "the header is separated by `;`, but fields must be separated by commas",
                HEADER_HINT,
            ));
        }
        return Err(unknown());
    }
    let mut columns: Vec<Column> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let column = known(n).ok_or_else(|| {
            Problem::hinted(
                format!("column {} of the header is not a known column name", i + 1),
                HEADER_HINT,
            )
        })?;
        if columns.contains(&column) {
            return Err(format!(
                "column `{}` appears twice in the header",
                column.name(Format::Native)
            )
            .into());
        }
        columns.push(column);
    }
    let require = |column: Column, admin: bool, side: &str| {
        if columns.contains(&column) || admin {
            Ok(())
        } else {
            Err(Problem::hinted(
                format!("the header has no `{}` column", column.name(Format::Native)),
                format!("add it, or configure `[{side}.admin]` to log in on each user's behalf"),
            ))
        }
    };
    require(Column::SourceUser, false, "source")
        .map_err(|_| Problem::hinted("the header has no `source_user` column", HEADER_HINT))?;
    require(Column::SourcePassword, admins.source, "source")?;
    require(
        Column::DestinationPassword,
        admins.destination,
        "destination",
    )?;
    Ok(Header {
        format: Format::Native,
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const NO_ADMIN: AdminLogins = AdminLogins {
        source: false,
        destination: false,
    };
    const DEST_ADMIN: AdminLogins = AdminLogins {
        source: false,
        destination: true,
    };
    const BOTH_ADMIN: AdminLogins = AdminLogins {
        source: true,
        destination: true,
    };
    /// Every password in the test inputs contains this, so one check covers them all.
    const SECRET: &str = "pw-SECRET";

    fn ok(csv: &str, admins: AdminLogins) -> Vec<Account> {
        parse(csv.as_bytes(), "accounts.csv", admins).unwrap()
    }

    /// The message, then `\nhint: ...` when there is one; the message itself never has it.
    fn with_hint(e: &SettingsError) -> String {
        use crate::diagnostics::HasHint as _;
        let message = e.to_string();
        assert!(
            !message.contains("hint"),
            "a hint in the message: {message}"
        );
        match e.hint() {
            Some(h) => format!("{message}\nhint: {h}"),
            None => message,
        }
    }

    fn expose(s: &Option<SecretString>) -> Option<&str> {
        s.as_ref().map(|s| s.expose_secret())
    }

    #[test]
    fn native_header_any_order_and_case() {
        let csv = "Destination_User , SOURCE_USER,source_password,destination_password\n\
                   new@b.example, old@a.example ,  pw-SECRET1 ,pw-SECRET2\n\
                   ,same@a.example,pw-SECRET3,pw-SECRET4\n";
        let a = ok(csv, NO_ADMIN);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].source_user, "old@a.example");
        assert_eq!(a[0].destination_user, "new@b.example");
        // Never trimmed.
        assert_eq!(expose(&a[0].source_password), Some("  pw-SECRET1 "));
        assert_eq!(expose(&a[0].destination_password), Some("pw-SECRET2"));
        assert_eq!(a[0].line, 2);
        assert_eq!(a[1].destination_user, "same@a.example");
        assert_eq!(a[1].line, 3);
    }

    #[test]
    fn bom_quotes_crlf_and_blank_rows() {
        let csv = "\u{feff}source_user,source_password,destination_user,destination_password\r\n\
                   a@x,\"pw-SECRET,with\"\"comma\",b@y,pw-SECRET\r\n\
                   ,,,\r\n\
                   \r\n";
        let a = ok(csv, NO_ADMIN);
        assert_eq!(a.len(), 1);
        assert_eq!(expose(&a[0].source_password), Some("pw-SECRET,with\"comma"));
    }

    #[test]
    fn line_numbers_count_blank_lines_and_multiline_cells() {
        let csv = "source_user,source_password,destination_user,destination_password\n\n\
                   a@x,\"pw-SECRET\nsecond line\",b@y,pw-SECRET\r\n\r\n\r\n\
                   c@x,pw-SECRET,d@y,pw-SECRET\n";
        let a = ok(csv, NO_ADMIN);
        assert_eq!((a[0].line, a[1].line), (3, 7));
    }

    #[test]
    fn line_numbers_of_many_rows() {
        // Every row's line is right far into a big file (the counter is incremental, so
        // this is linear: 50,000 rows load in milliseconds, see BENCHMARKS.md).
        let mut csv =
            String::from("source_user,source_password,destination_user,destination_password\n");
        let mut want = Vec::new();
        let mut line = 2;
        for i in 0..3000 {
            want.push(line);
            if i % 7 == 0 {
                csv.push_str(&format!("u{i}@x,\"pw-SECRET\n{i}\",d{i}@y,pw-SECRET\n"));
                line += 2;
            } else {
                csv.push_str(&format!("u{i}@x,pw-SECRET,d{i}@y,pw-SECRET\r\n"));
                line += 1;
            }
            if i % 11 == 0 {
                csv.push_str("\n\r\n");
                line += 2;
            }
        }
        let got: Vec<usize> = ok(&csv, NO_ADMIN).iter().map(|a| a.line).collect();
        assert_eq!(got, want);
        // An error far down names its line too.
        csv.push_str("u0@x,pw-SECRET,z@y,pw-SECRET\n");
        let e = parse(csv.as_bytes(), "a.csv", NO_ADMIN)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("line {line}: ")), "{e}");
    }

    #[test]
    fn line_counter_restarts_for_an_earlier_offset() {
        let mut c = LineCounter::new(b"a\nb\nc\n");
        assert_eq!(c.line_at(4), 3);
        assert_eq!(c.line_at(2), 2);
        assert_eq!(c.line_at(0), 1);
        assert_eq!(c.line_at(99), 4);
    }

    #[test]
    fn microsoft_365_header() {
        let csv = "EmailAddress,UserName,Password\nnew@b.example,old@a.example,pw-SECRET\n";
        let a = ok(csv, DEST_ADMIN);
        assert_eq!(a[0].destination_user, "new@b.example");
        assert_eq!(a[0].source_user, "old@a.example");
        assert_eq!(expose(&a[0].source_password), Some("pw-SECRET"));
        assert!(a[0].destination_password.is_none());
    }

    #[test]
    fn admin_logins_allow_empty_passwords() {
        let csv = "source_user,source_password,destination_user,destination_password\n\
                   a@x,,b@y,\n";
        let a = ok(csv, BOTH_ADMIN);
        assert!(a[0].source_password.is_none() && a[0].destination_password.is_none());
        // And the password columns may be left out entirely.
        let a = ok("source_user\na@x\n", BOTH_ADMIN);
        assert_eq!(a[0].destination_user, "a@x");
    }

    #[test]
    fn errors_name_line_and_column_and_never_a_cell() {
        let h = "source_user,source_password,destination_user,destination_password\n";
        let table: &[(String, AdminLogins, usize, &str)] = &[
            ("".into(), NO_ADMIN, 1, "the file is empty"),
            (h.into(), NO_ADMIN, 1, "no account below the header"),
            (
                "a@x,pw-SECRET,b@y,pw-SECRET\n".into(),
                NO_ADMIN,
                1,
                "header row is missing or unknown",
            ),
            (
                "source_user,pw-SECRET,destination_user\n".into(),
                NO_ADMIN,
                1,
                "column 2 of the header is not a known column name",
            ),
            (
                "source_user;source_password;destination_user;destination_password\n".into(),
                NO_ADMIN,
                1,
                "separated by `;`",
            ),
            (
                "source_user,source_user,source_password,destination_password\n".into(),
                NO_ADMIN,
                1,
                "`source_user` appears twice",
            ),
            (
                "source_user,source_password,destination_user\n".into(),
                NO_ADMIN,
                1,
                "no `destination_password` column",
            ),
            (
                "destination_user,source_password,destination_password\n".into(),
                NO_ADMIN,
                1,
                "no `source_user` column",
            ),
            (
                "EmailAddress,UserName,Password\nb@y,a@x,pw-SECRET\n".into(),
                NO_ADMIN,
                1,
                "hint: configure `[destination.admin]`",
            ),
            (
                format!("{h}a@x,pw-SECRET,b@y,pw-SECRET\nc@x,pw-SECRET,d@y\n"),
                NO_ADMIN,
                3,
                "3 fields, but the header has 4",
            ),
            (
                format!("{h} ,pw-SECRET,b@y,pw-SECRET\n"),
                NO_ADMIN,
                2,
                "`source_user` is empty",
            ),
            (
                format!("{h}a@x,,b@y,pw-SECRET\n"),
                NO_ADMIN,
                2,
                "`source_password` is empty\nhint: fill it in, or configure `[source.admin]`",
            ),
            (
                format!("{h}a@x,pw-SECRET,b@y,\n"),
                NO_ADMIN,
                2,
                "`destination_password` is empty",
            ),
            (
                "EmailAddress,UserName,Password\nb@y,a@x,\n".into(),
                DEST_ADMIN,
                2,
                "`Password` is empty",
            ),
            (
                format!("{h}a@x,pw-SECRET,b@y,pw-SECRET\nc@x,pw-SECRET,B@Y,pw-SECRET\n"),
                NO_ADMIN,
                3,
                "destination user is the same as on line 2",
            ),
            (
                // An empty destination_user means the source user: a clash too.
                format!("{h}a@x,pw-SECRET,b@y,pw-SECRET\nb@y,pw-SECRET,,pw-SECRET\n"),
                NO_ADMIN,
                3,
                "destination user is the same as on line 2",
            ),
            (
                format!("{h}a@x,pw-SECRET,b@y,pw-SECRET\n\nA@X,pw-SECRET,c@y,pw-SECRET\n"),
                NO_ADMIN,
                4,
                "`source_user` is the same as on line 2",
            ),
        ];
        for (csv, admins, line, want) in table {
            let e = with_hint(&parse(csv.as_bytes(), "accounts.csv", *admins).unwrap_err());
            assert!(
                e.starts_with(&format!("`accounts.csv` line {line}: ")),
                "{csv:?}: {e}"
            );
            assert!(e.contains(want), "{csv:?}: {e}");
            assert!(!e.contains(SECRET), "{csv:?} leaks a secret: {e}");
        }
    }

    #[test]
    fn non_utf8_cells_are_named_not_shown() {
        let csv = b"source_user,source_password,destination_user,destination_password\n\
                        a@x,pw-SECRET\xe9,b@y,pw\n"
            .to_vec();
        let e = parse(&csv, "accounts.csv", NO_ADMIN)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2: column `source_password` is not valid UTF-8"),
            "{e}"
        );
        assert!(!e.contains(SECRET), "{e}");
    }

    #[test]
    fn debug_output_hides_passwords() {
        let a = ok(
            "source_user,source_password,destination_user,destination_password\n\
             a@x,pw-SECRET,b@y,pw-SECRET\n",
            NO_ADMIN,
        );
        let dbg = format!("{a:?}");
        assert!(dbg.contains("a@x") && !dbg.contains(SECRET), "{dbg}");
    }
}
