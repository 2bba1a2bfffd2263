//! Header values that borrow from the parsed datagram (RFC 3261 §7.3):
//! [`HeaderValue`] is a `str` that is either a range of the message text
//! shared by every header of one parse, or an owned `String`.
//!
//! The parser copies the message text once into an `Arc<str>` and gives each
//! header a cheap range of it, instead of one `String` per header; only
//! folded values (rare) and values set by code own their text.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// A header value: text that derefs to `&str`. Built from a `String` or a
/// `&str` (`"x".into()`), or by the parser as a range of the received
/// message. Equality, ordering of comparisons and hashing are those of the
/// text, whatever the representation.
#[derive(Clone)]
pub struct HeaderValue(Repr);

#[derive(Clone)]
enum Repr {
    /// `text[start..end]`; both ends are character boundaries.
    Shared {
        text: Arc<str>,
        start: u32,
        end: u32,
    },
    Owned(String),
}

impl HeaderValue {
    /// `text[range]` if it is in bounds and on character boundaries.
    pub(crate) fn shared(text: &Arc<str>, start: usize, end: usize) -> Option<HeaderValue> {
        text.get(start..end)?;
        Some(HeaderValue(Repr::Shared {
            text: Arc::clone(text),
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
        }))
    }

    /// The value as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Checked in `shared`; the fallback cannot be reached.
            Repr::Shared { text, start, end } => {
                text.get(*start as usize..*end as usize).unwrap_or_default()
            }
            Repr::Owned(s) => s,
        }
    }

    /// The value as an owned `String` (copies a shared value).
    pub fn into_string(self) -> String {
        match self.0 {
            Repr::Owned(s) => s,
            Repr::Shared { .. } => self.as_str().to_owned(),
        }
    }
}

impl Deref for HeaderValue {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for HeaderValue {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for HeaderValue {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Default for HeaderValue {
    fn default() -> Self {
        HeaderValue(Repr::Owned(String::new()))
    }
}

impl From<String> for HeaderValue {
    fn from(s: String) -> Self {
        HeaderValue(Repr::Owned(s))
    }
}

impl From<&str> for HeaderValue {
    fn from(s: &str) -> Self {
        HeaderValue(Repr::Owned(s.to_owned()))
    }
}

impl From<HeaderValue> for String {
    fn from(v: HeaderValue) -> Self {
        v.into_string()
    }
}

impl PartialEq for HeaderValue {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for HeaderValue {}

impl PartialEq<str> for HeaderValue {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for HeaderValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for HeaderValue {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<HeaderValue> for str {
    fn eq(&self, other: &HeaderValue) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<HeaderValue> for &str {
    fn eq(&self, other: &HeaderValue) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<HeaderValue> for String {
    fn eq(&self, other: &HeaderValue) -> bool {
        self == other.as_str()
    }
}

impl Hash for HeaderValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_and_owned_compare_as_text() {
        let text: Arc<str> = Arc::from("Via: a\r\nTo: b");
        let a = HeaderValue::shared(&text, 5, 6).unwrap();
        assert_eq!(a, HeaderValue::from("a"));
        assert_eq!(a, "a");
        assert_eq!(&*a, "a");
        assert_eq!(a.to_string(), "a");
        assert_eq!(format!("{a:?}"), "\"a\"");
        assert_eq!(a.clone().into_string(), "a");
        assert!(HeaderValue::shared(&text, 5, 99).is_none());
        let multi: Arc<str> = Arc::from("é");
        assert!(HeaderValue::shared(&multi, 1, 2).is_none());
    }
}
