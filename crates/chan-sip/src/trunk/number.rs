//! Telephone numbers between carriers and the dialplan: the dialled
//! number a carrier sends, read as E.164 (ITU-T E.164, RFC 3966 §5.1.4
//! visual separators dropped), and our numbers written as a trunk wants them.

/// How numbers are written towards a trunk (`caller_id_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallerIdFormat {
    /// `+15550001001` (the default).
    #[default]
    E164,
    /// Without `+`: `15550001001`. Carriers that want the national
    /// significant number only take the digits after their country code,
    /// which they strip themselves when it is their own.
    National,
}

impl CallerIdFormat {
    /// `number` (E.164 or not) in this format.
    pub fn write(self, number: &str) -> String {
        match self {
            CallerIdFormat::E164 => match to_e164(number) {
                Some(n) => n,
                None => number.to_owned(),
            },
            CallerIdFormat::National => number.trim_start_matches('+').to_owned(),
        }
    }
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
        assert_eq!(
            CallerIdFormat::National.write("+15550001001"),
            "15550001001"
        );
        assert_eq!(CallerIdFormat::E164.write("1001"), "1001");
    }
}
