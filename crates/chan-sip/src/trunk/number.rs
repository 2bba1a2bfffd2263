//! Telephone numbers between carriers and the dialplan: the dialled
//! number a carrier sends, read as E.164 (ITU-T E.164, RFC 3966 §5.1.4
//! visual separators dropped), and our numbers written as a trunk wants them.

/// How numbers are written towards a trunk (`caller_id_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallerIdFormat {
    /// `+15550001001` (the default).
    #[default]
    E164,
    /// The national (significant) number: E.164 without `+` and country
    /// code, `5550001001` for `+15550001001`, `2079460000` for
    /// `+442079460000`, as carriers that take only their own country's
    /// numbers want the caller ID.
    National,
}

impl CallerIdFormat {
    /// The caller ID `number` (E.164 or not) in this format; a number that
    /// is not E.164 is sent as it is (without a leading `+`, nationally).
    pub fn write(self, number: &str) -> String {
        match self {
            CallerIdFormat::E164 => match to_e164(number) {
                Some(n) => n,
                None => number.to_owned(),
            },
            CallerIdFormat::National => match to_e164(number) {
                Some(n) => national(&n).to_owned(),
                None => number.trim_start_matches('+').to_owned(),
            },
        }
    }

    /// The dialled number (Request-URI and To) in this format: E.164, or
    /// for `national` its digits without `+` (the country code stays: the
    /// number may be another country's).
    pub fn write_dialled(self, number: &str) -> String {
        match self {
            CallerIdFormat::E164 => self.write(number),
            CallerIdFormat::National => number.trim_start_matches('+').to_owned(),
        }
    }
}

/// The national significant number of `e164` (`+` and digits): the digits
/// after its country code. ITU-T E.164 country codes are a prefix code
/// (Annex to ITU-T E.164, "List of country codes"): 1 and 7 are one
/// digit, the two-digit ones are listed here, all others have three.
fn national(e164: &str) -> &str {
    const TWO_DIGIT: &[&str] = &[
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
        "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
        "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    let digits = e164.trim_start_matches('+');
    let cc = if digits.starts_with('1') || digits.starts_with('7') {
        1
    } else if TWO_DIGIT.iter().any(|cc| digits.starts_with(cc)) {
        2
    } else {
        3
    };
    digits.get(cc..).unwrap_or(digits)
}

/// `user` (a Request-URI or To user part) as E.164: `+` and 7 to 15
/// digits. `+15557654321`, `0015557654321` (international prefix 00) and
/// `15557654321` (11 or more digits, taken as already international) are
/// all `+15557654321`; separators `-.() ` are dropped; anything else
/// (a short extension number, letters) is `None`.
pub fn to_e164(user: &str) -> Option<String> {
    let user = user.split(';').next().unwrap_or_default();
    let (plus, rest) = match user.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, user),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '-' | '.' | '(' | ')' | ' ' => {}
            _ => return None,
        }
    }
    let digits = if plus {
        digits
    } else if let Some(d) = digits.strip_prefix("00") {
        d.to_owned()
    } else if digits.len() >= 11 && !digits.starts_with('0') {
        digits
    } else {
        return None;
    };
    (7..=15)
        .contains(&digits.len())
        .then(|| format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_from_what_carriers_send() {
        assert_eq!(to_e164("+15557654321").as_deref(), Some("+15557654321"));
        assert_eq!(to_e164("0015557654321").as_deref(), Some("+15557654321"));
        assert_eq!(to_e164("15557654321").as_deref(), Some("+15557654321"));
        assert_eq!(to_e164("+1-555-765-4321").as_deref(), Some("+15557654321"));
        assert_eq!(
            to_e164("+15557654321;npdi").as_deref(),
            Some("+15557654321")
        );
        assert_eq!(to_e164("1001"), None);
        assert_eq!(to_e164("05557654321"), None);
        assert_eq!(to_e164("alice"), None);
        assert_eq!(to_e164("+1234567890123456"), None);
    }

    #[test]
    fn caller_id_formats() {
        assert_eq!(CallerIdFormat::E164.write("+15550001001"), "+15550001001");
        assert_eq!(CallerIdFormat::National.write("+15550001001"), "5550001001");
        assert_eq!(
            CallerIdFormat::National.write("+442079460000"),
            "2079460000"
        );
        assert_eq!(CallerIdFormat::National.write("+4930123456"), "30123456");
        assert_eq!(CallerIdFormat::National.write("+35312345678"), "12345678");
        assert_eq!(CallerIdFormat::National.write("+74951234567"), "4951234567");
        assert_eq!(CallerIdFormat::National.write("1001"), "1001");
        assert_eq!(CallerIdFormat::E164.write("1001"), "1001");
        assert_eq!(
            CallerIdFormat::National.write_dialled("+15557654321"),
            "15557654321"
        );
        assert_eq!(
            CallerIdFormat::E164.write_dialled("15557654321"),
            "+15557654321"
        );
    }
}
