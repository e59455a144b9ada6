//! Sizes in the config (`max-size = "50MiB"`): binary units, as the plan prints them, so a
//! value copied from a plan line means the same thing in the config.

/// Parses `"50MiB"`, `"1.5 GiB"`, `"512KiB"`, `"1024"`, `"100B"` into bytes. Units are
/// binary (`KiB`, `MiB`, `GiB`, `TiB`, case-insensitive); the SI spellings (`KB`, `MB`, `GB`,
/// `TB`) are refused with a message, because they are ambiguous.
pub fn parse_size(input: &str) -> Result<u64, String> {
    parse(input, false)
}

/// Like [`parse_size`], and also the decimal SI units (`kB`/`KB` = 1,000 bytes, `MB`,
/// `GB`, `TB`): for the pacing caps, which providers state in decimal units ("500 MB per
/// day").
pub(crate) fn parse_rate_size(input: &str) -> Result<u64, String> {
    parse(input, true)
}

fn parse(input: &str, si: bool) -> Result<u64, String> {
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    if number.is_empty() {
        return Err(format!(
            "invalid size `{input}`: expected a number with a binary unit, e.g. `50MiB`"
        ));
    }
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        "kb" if si => 1_000,
        "mb" if si => 1_000_000,
        "gb" if si => 1_000_000_000,
        "tb" if si => 1_000_000_000_000,
        "kb" | "mb" | "gb" | "tb" => {
            return Err(format!(
                "invalid size `{input}`: use binary units (`KiB`, `MiB`, `GiB`, `TiB`), \
                 e.g. `50MiB`"
            ))
        }
        _ => {
            return Err(if si {
                format!(
                    "invalid size `{input}`: unknown unit, expected `B`, `KiB`, `MiB`, `GiB`, \
                     `TiB` or `kB`, `MB`, `GB`, `TB`"
                )
            } else {
                format!(
                    "invalid size `{input}`: unknown unit, expected `B`, `KiB`, `MiB`, `GiB` or \
                     `TiB`"
                )
            })
        }
    };
    let too_big = || format!("invalid size `{input}`: too large");
    if let Some((int, frac)) = number.split_once('.') {
        // Decimal fractions: exact integer arithmetic, rounded down to whole bytes.
        if int.is_empty() || frac.is_empty() || frac.contains('.') || frac.len() > 9 {
            return Err(format!("invalid size `{input}`: malformed number"));
        }
        let int: u64 = int.parse().map_err(|_| too_big())?;
        let scale = 10u128.pow(frac.len() as u32);
        let frac: u128 = frac.parse().map_err(|_| too_big())?;
        let whole = (int as u128) * (factor as u128) + frac * (factor as u128) / scale;
        u64::try_from(whole).map_err(|_| too_big())
    } else {
        let n: u64 = number.parse().map_err(|_| too_big())?;
        n.checked_mul(factor).ok_or_else(too_big)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_sizes_also_take_decimal_units() {
        assert_eq!(parse_rate_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_rate_size("2,500MB").ok(), None);
        assert_eq!(parse_rate_size("2.5GB"), Ok(2_500_000_000));
        assert_eq!(parse_rate_size("10kB"), Ok(10_000));
        assert_eq!(parse_rate_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_rate_size("7"), Ok(7));
        assert!(parse_rate_size("5 MBps").unwrap_err().contains("`MB`"));
        assert!(
            parse_size("500MB").is_err(),
            "max-size keeps refusing SI units"
        );
    }

    #[test]
    fn sizes() {
        let table: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("1024", Some(1024)),
            ("100B", Some(100)),
            ("1KiB", Some(1024)),
            ("50MiB", Some(50 * 1024 * 1024)),
            ("50 MiB", Some(50 * 1024 * 1024)),
            ("50mib", Some(50 * 1024 * 1024)),
            ("1GiB", Some(1 << 30)),
            ("2TiB", Some(2 << 40)),
            ("1.5GiB", Some(3 << 29)),
            ("0.5KiB", Some(512)),
            ("1.0001B", Some(1)),
            ("50M", Some(50 << 20)),
            ("50MB", None),
            ("1GB", None),
            ("MiB", None),
            ("", None),
            ("-1", None),
            ("1.MiB", None),
            (".5MiB", None),
            ("1.2.3MiB", None),
            ("5 PiB", None),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("17179869184GiB", None),
        ];
        for (input, want) in table {
            assert_eq!(parse_size(input).ok(), *want, "input {input:?}");
        }
    }

    #[test]
    fn si_units_get_a_helpful_message() {
        let e = parse_size("50MB").unwrap_err();
        assert!(e.contains("binary units") && e.contains("`50MB`"), "{e}");
    }
}
