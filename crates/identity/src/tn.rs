//! Telephone-number canonicalization for PASSporT `orig`/`dest` (RFC 8224 §8.3).

use thiserror::Error;

/// The longest number accepted: E.164's fifteen digits (ITU-T E.164 §6).
pub const MAX_DIGITS: usize = 15;

/// Why a string is not a telephone number in the RFC 8224 §8.3 sense.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TnError {
    /// Nothing but separators (or nothing at all).
    #[error("'{0}' holds no digits; a telephone number is needed (like +15551234567)")]
    Empty(String),
    /// A character that is neither a digit nor a visual separator.
    #[error(
        "'{input}' is not a telephone number: '{found}' is neither a digit nor a visual separator (- . ( ) space)"
    )]
    NotDigit {
        /// The string as given.
        input: String,
        /// The first offending character.
        found: char,
    },
    /// More digits than E.164 allows.
    #[error("'{0}' has more than 15 digits, the E.164 maximum")]
    TooLong(String),
}

/// Canonicalizes a telephone number as RFC 8224 §8.3 asks before it goes
/// into (or is compared with) a PASSporT: URI parameters after `;` are
/// dropped, the visual separators `-`, `.`, `(`, `)` and spaces are
/// removed, then a leading `+`; what remains must be digits only.
///
/// `"+1 (555) 765-4321"` → `"15557654321"`. Whether a national number
/// needs a country code first is the caller's business (the trunk's
/// `caller_id_format`).
pub fn canonical_tn(input: &str) -> Result<String, TnError> {
    let number = input.split(';').next().unwrap_or_default().trim();
    let mut digits = String::with_capacity(number.len());
    for (i, c) in number.char_indices() {
        match c {
            '0'..='9' => digits.push(c),
            '-' | '.' | '(' | ')' | ' ' => {}
            '+' if digits.is_empty() && number[..i].chars().all(is_separator) => {}
            _ => {
                return Err(TnError::NotDigit {
                    input: input.to_owned(),
                    found: c,
                });
            }
        }
    }
    if digits.is_empty() {
        return Err(TnError::Empty(input.to_owned()));
    }
    if digits.len() > MAX_DIGITS {
        return Err(TnError::TooLong(input.to_owned()));
    }
    Ok(digits)
}

fn is_separator(c: char) -> bool {
    matches!(c, '-' | '.' | '(' | ')' | ' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_plus_are_removed() {
        assert_eq!(canonical_tn("+1 (555) 765-4321").unwrap(), "15557654321");
        assert_eq!(canonical_tn("+15557654321").unwrap(), "15557654321");
        assert_eq!(canonical_tn("1.212.555.1213").unwrap(), "12125551213");
        assert_eq!(canonical_tn("030 1234567").unwrap(), "0301234567");
    }

    #[test]
    fn uri_parameters_are_dropped() {
        assert_eq!(
            canonical_tn("+15557654321;npdi;rn=+15550000000").unwrap(),
            "15557654321"
        );
    }

    #[test]
    fn non_numbers_are_refused() {
        assert!(matches!(
            canonical_tn("alice"),
            Err(TnError::NotDigit { found: 'a', .. })
        ));
        assert!(matches!(
            canonical_tn("1555+1234"),
            Err(TnError::NotDigit { found: '+', .. })
        ));
        assert!(matches!(
            canonical_tn("++1555"),
            Err(TnError::NotDigit { .. })
        ));
        assert!(matches!(canonical_tn("+"), Err(TnError::Empty(_))));
        assert!(matches!(canonical_tn(""), Err(TnError::Empty(_))));
        assert!(matches!(
            canonical_tn("+1234567890123456"),
            Err(TnError::TooLong(_))
        ));
    }
}
