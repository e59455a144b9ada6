//! Human-readable numbers for plans and reports: counts with thousands separators,
//! byte sizes in binary units, and singular/plural words.

/// `1204` → `1,204`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Binary units with one decimal: `999 B`, `512.0 KiB`, `85.3 MiB`, `1.2 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    // Work in tenths of a unit, rounded half up, so that e.g. 1048575 B rounds to
    // 1024.0 KiB and then rolls over to 1.0 MiB instead of printing `1024.0 KiB`.
    let mut unit = 0;
    let mut divisor: u128 = 1024;
    loop {
        let tenths = (u128::from(n) * 10 + divisor / 2) / divisor;
        if tenths < 10 * 1024 || unit == UNITS.len() - 1 {
            return format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit]);
        }
        unit += 1;
        divisor *= 1024;
    }
}

/// The word for `n` things: `plural(1, "folder", "folders")` → `folder`.
pub(crate) fn plural<'a>(n: u64, singular: &'a str, plural: &'a str) -> &'a str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

/// A count with its word: `counted(1204, "message", "messages")` → `1,204 messages`.
pub(crate) fn counted(n: u64, singular: &str, plural_form: &str) -> String {
    format!("{} {}", count(n), plural(n, singular, plural_form))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        for (n, want) in [
            (0, "0"),
            (7, "7"),
            (999, "999"),
            (1000, "1,000"),
            (1204, "1,204"),
            (999_999, "999,999"),
            (1_000_000, "1,000,000"),
            (12_345_678, "12,345,678"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ] {
            assert_eq!(count(n), want, "{n}");
        }
    }

    #[test]
    fn byte_sizes() {
        for (n, want) in [
            (0, "0 B"),
            (999, "999 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1075, "1.0 KiB"),
            (1076, "1.1 KiB"),
            (512 * 1024, "512.0 KiB"),
            (1_048_575, "1.0 MiB"),
            (1_048_576, "1.0 MiB"),
            (1024 * 1024 - 52, "1023.9 KiB"),
            (89_443_532, "85.3 MiB"),
            (1_288_490_189, "1.2 GiB"),
            (1 << 40, "1.0 TiB"),
            (u64::MAX, "16.0 EiB"),
        ] {
            assert_eq!(bytes(n), want, "{n}");
        }
    }

    #[test]
    fn plurals() {
        for (n, want) in [(0, "folders"), (1, "folder"), (2, "folders")] {
            assert_eq!(plural(n, "folder", "folders"), want, "{n}");
        }
    }
}
