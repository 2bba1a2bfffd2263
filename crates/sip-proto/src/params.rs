//! Parameter lists: header `generic-param`s (RFC 3261 §25.1, `;name=value`
//! with LWS and quoted strings) and SIP/tel URI parameters (§19.1.1,
//! `uri-parameter`, no LWS, `%` escapes kept raw).

use std::borrow::Cow;
use std::fmt;

use crate::scan::{self, Cursor, GENVALUE, PARAMCHAR, PResult, TOKEN};

/// An ordered list of `name[=value]` parameters.
///
/// Names are matched case-insensitively and kept as received. Values are
/// kept raw: a quoted-string keeps its quotes and backslashes (use
/// [`Params::unquoted`] to read the text inside), URI parameters keep their
/// `%` escapes. `None` is a parameter without `=value` (e.g. `;lr`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Params(Vec<(String, Option<String>)>);

impl Params {
    /// An empty list.
    pub fn new() -> Self {
        Params(Vec::new())
    }

    /// `Some(value)` if a parameter called `name` is present (case-insensitive);
    /// the inner `None` means it has no value.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The raw value of `name`, if present with a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    /// The value of `name` with the quotes and escapes of a quoted-string
    /// removed (unquoted values are returned as they are).
    pub fn unquoted(&self, name: &str) -> Option<Cow<'_, str>> {
        self.value(name).map(scan::unquote)
    }

    /// Whether a parameter called `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` to the raw `value` (replacing the first parameter of that
    /// name, or appending). The value is written as given: quote it yourself
    /// or use [`Params::set_quoted`].
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        if let Some(slot) = self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            slot.1 = value;
        } else {
            self.0.push((name.to_owned(), value));
        }
    }

    /// Sets `name` to `text` written as a quoted-string.
    pub fn set_quoted(&mut self, name: &str, text: &str) {
        let q = scan::quote(text);
        self.set(name, Some(&q));
    }

    /// Appends a parameter (even if one of that name exists).
    pub fn push(&mut self, name: impl Into<String>, value: Option<String>) {
        self.0.push((name.into(), value));
    }

    /// Removes every parameter called `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The parameters in order, as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// How many parameters there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An empty list with room for as many parameters as `raw` has `;`s
    /// (exactly its parameters in a URI; at least them in a header, where
    /// a quoted value may hold a `;`): a list grown one push at a time
    /// keeps room for four, and parsed URIs and headers live as long as
    /// the dialogs that keep them.
    fn sized_for(raw: &str) -> Params {
        Params(Vec::with_capacity(
            raw.bytes().filter(|&b| b == b';').count(),
        ))
    }

    /// Builds the list from a raw span that [`scan_header_params`] accepted.
    pub(crate) fn from_header_raw(raw: &str) -> Params {
        if raw.is_empty() {
            return Params::new();
        }
        let mut p = Params::sized_for(raw);
        let mut c = Cursor::new(raw);
        // The span was validated by the same scanner, so this cannot fail;
        // on a bug we keep what was read.
        let _ = scan_header_params(&mut c, &mut |n, v| {
            p.0.push((n.to_owned(), v.map(str::to_owned)));
        });
        p
    }

    /// Builds the list from a raw span that [`scan_uri_params`] accepted.
    pub(crate) fn from_uri_raw(raw: &str) -> Params {
        if raw.is_empty() {
            return Params::new();
        }
        let mut p = Params::sized_for(raw);
        let mut c = Cursor::new(raw);
        // Validated span, see above.
        let _ = scan_uri_params(&mut c, &mut |n, v| {
            p.0.push((n.to_owned(), v.map(str::to_owned)));
        });
        p
    }
}

/// Writes `;name[=value]` for each parameter.
impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            f.write_str(";")?;
            f.write_str(n)?;
            if let Some(v) = v {
                f.write_str("=")?;
                f.write_str(v)?;
            }
        }
        Ok(())
    }
}

/// Scans `*( SEMI generic-param )` (LWS allowed around `;` and `=`), calling
/// `f` for each parameter. Stops before the first thing that is not `;`
/// (trailing LWS is left unconsumed).
pub(crate) fn scan_header_params<'a>(
    c: &mut Cursor<'a>,
    f: &mut impl FnMut(&'a str, Option<&'a str>),
) -> PResult<()> {
    loop {
        let before = c.pos();
        c.skip_lws();
        if !c.eat(b';') {
            c.set_pos(before);
            return Ok(());
        }
        c.skip_lws();
        let name = c.take_class(TOKEN);
        if name.is_empty() {
            return Err(if matches!(c.peek(), Some(b';' | b',') | None) {
                "empty parameter (stray ';')".into()
            } else {
                c.unexpected("a parameter name")
            });
        }
        let after_name = c.pos();
        c.skip_lws();
        if c.eat(b'=') {
            c.skip_lws();
            let value = if c.peek() == Some(b'"') {
                c.quoted_string()?
            } else {
                c.take_class(GENVALUE)
            };
            if value.is_empty() {
                return Err(format!("parameter '{name}' has an empty value").into());
            }
            f(name, Some(value));
        } else {
            c.set_pos(after_name);
            f(name, None);
        }
    }
}

/// Scans `*( ";" uri-parameter )` of a SIP or tel URI (`pname["=" pvalue]`,
/// both `1*paramchar`), calling `f` for each. Stops before anything else.
pub(crate) fn scan_uri_params<'a>(
    c: &mut Cursor<'a>,
    f: &mut impl FnMut(&'a str, Option<&'a str>),
) -> PResult<()> {
    while c.eat(b';') {
        let name = c.take_escaped(PARAMCHAR)?;
        if name.is_empty() {
            return Err(if matches!(c.peek(), Some(b';' | b'?') | None) {
                "empty URI parameter (stray ';')".into()
            } else {
                c.unexpected("a URI parameter name")
            });
        }
        if c.eat(b'=') {
            let value = c.take_escaped(PARAMCHAR)?;
            if value.is_empty() {
                return Err(format!("URI parameter '{name}' has an empty value").into());
            }
            f(name, Some(value));
        } else {
            f(name, None);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pairs = Vec<(String, Option<String>)>;

    fn header(s: &str) -> PResult<(Pairs, String)> {
        let mut v = Vec::new();
        let mut c = Cursor::new(s);
        scan_header_params(&mut c, &mut |n, val| {
            v.push((n.to_owned(), val.map(str::to_owned)))
        })?;
        Ok((v, c.rest().to_owned()))
    }

    #[test]
    fn header_params_with_lws_and_quotes() {
        let (v, rest) = header(" ;   tag    = 1918181833n ; lr ;x=\"a;b,c\" , next").unwrap();
        assert_eq!(
            v,
            vec![
                ("tag".into(), Some("1918181833n".into())),
                ("lr".into(), None),
                ("x".into(), Some("\"a;b,c\"".into())),
            ]
        );
        assert_eq!(rest, " , next");
        assert!(header(";;").is_err());
        assert!(header(";a=").is_err());
        assert!(header(";received=[2001:db8::9:255]").is_ok());
        let p = Params::from_header_raw(" ; Tag=1 ; q = 0.33");
        assert_eq!(p.get("TAG"), Some(Some("1")));
        assert_eq!(p.to_string(), ";Tag=1;q=0.33");
    }

    #[test]
    fn parsed_lists_keep_room_for_their_parameters_only() {
        // Not the four slots a list grown by `push` keeps: parsed URIs and
        // headers live as long as the dialogs that keep them.
        assert_eq!(Params::from_uri_raw(";transport=udp").0.capacity(), 1);
        assert_eq!(Params::from_uri_raw(";lr;ob").0.capacity(), 2);
        assert_eq!(Params::from_header_raw(" ; tag=1").0.capacity(), 1);
        let quoted = Params::from_header_raw(";x=\"a;b\";y");
        assert_eq!(quoted.len(), 2);
        assert!(quoted.0.capacity() <= 3);
        assert_eq!(quoted.to_string(), ";x=\"a;b\";y");
    }

    #[test]
    fn uri_params() {
        let mut c = Cursor::new(";%6C%72;n%61me=v%61lue%25%34%31?x=y");
        let mut v = Vec::new();
        scan_uri_params(&mut c, &mut |n, val| v.push((n, val))).unwrap();
        assert_eq!(
            v,
            vec![("%6C%72", None), ("n%61me", Some("v%61lue%25%34%31"))]
        );
        assert_eq!(c.rest(), "?x=y");
        assert!(scan_uri_params(&mut Cursor::new(";;"), &mut |_, _| ()).is_err());
        assert!(scan_uri_params(&mut Cursor::new(";a="), &mut |_, _| ()).is_err());
    }

    #[test]
    fn set_get_remove() {
        let mut p = Params::new();
        p.set("realm", Some("\"pbx\""));
        p.set_quoted("nonce", "a\"b");
        p.set("REALM", Some("\"x\""));
        assert_eq!(p.len(), 2);
        assert_eq!(p.unquoted("nonce").as_deref(), Some("a\"b"));
        assert_eq!(p.unquoted("realm").as_deref(), Some("x"));
        p.remove("Realm");
        assert!(!p.contains("realm"));
        assert_eq!(p.iter().count(), 1);
    }
}
