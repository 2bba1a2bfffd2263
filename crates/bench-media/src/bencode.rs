//! A small bencode encoder and decoder (the encoding of rtpengine's ng
//! control protocol): integers `i42e`, byte strings `3:abc`, lists
//! `l...e` and dictionaries `d...e` with byte-string keys in sorted order.

use std::collections::BTreeMap;
use std::fmt;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// `i<n>e`.
    Int(i64),
    /// `<len>:<bytes>`.
    Bytes(Vec<u8>),
    /// `l<values>e`.
    List(Vec<Value>),
    /// `d<key><value>...e`, keys sorted (a `BTreeMap` keeps them so).
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Why a buffer is not one bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// Byte offset where decoding stopped.
    pub at: usize,
    /// What was wrong there.
    pub what: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bencode: {} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for DecodeError {}

/// Nesting deeper than this is refused (a reply is two or three levels).
const MAX_DEPTH: usize = 32;

impl Value {
    /// A byte string from text.
    pub(crate) fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dictionary from `(key, value)` pairs.
    pub(crate) fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The value under `key` in a dictionary.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// A byte string as text (lossy).
    pub(crate) fn as_text(&self) -> Option<String> {
        match self {
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// Appends the encoding to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(n) => {
                out.push(b'i');
                out.extend_from_slice(n.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => {
                out.extend_from_slice(b.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(b);
            }
            Value::List(items) => {
                out.push(b'l');
                for v in items {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    out.extend_from_slice(k.len().to_string().as_bytes());
                    out.push(b':');
                    out.extend_from_slice(k);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The encoding.
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes exactly one value filling `buf`.
    pub(crate) fn decode(buf: &[u8]) -> Result<Value, DecodeError> {
        let mut d = Decoder { buf, pos: 0 };
        let v = d.value(0)?;
        if d.pos != buf.len() {
            return Err(d.err("trailing bytes"));
        }
        Ok(v)
    }
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError { at: self.pos, what }
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err("unexpected end"))
    }

    /// Digits (with an optional leading `-` when `signed`) up to `end`.
    fn number(&mut self, end: u8, signed: bool) -> Result<i64, DecodeError> {
        let start = self.pos;
        let rest = self.buf.get(start..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == end)
            .ok_or_else(|| self.err("unterminated number"))?;
        let text = rest.get(..len).unwrap_or_default();
        let digits = if signed {
            text.strip_prefix(b"-").unwrap_or(text)
        } else {
            text
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(self.err("bad number"));
        }
        if digits.len() > 1 && digits.first() == Some(&b'0') {
            return Err(self.err("leading zero"));
        }
        let n = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| self.err("number out of range"))?;
        self.pos = start + len + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.number(b':', false)?;
        let len = usize::try_from(len).map_err(|_| self.err("bad length"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("string past the end"))?;
        let out = self.buf.get(self.pos..end).unwrap_or_default().to_vec();
        self.pos = end;
        Ok(out)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                Ok(Value::Int(self.number(b'e', true)?))
            }
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut d = BTreeMap::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(self.err("dictionary key is not a string"));
                    }
                    let k = self.bytes()?;
                    let v = self.value(depth + 1)?;
                    d.insert(k, v);
                }
                self.pos += 1;
                Ok(Value::Dict(d))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?)),
            _ => Err(self.err("not a value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_sorted_dictionaries() {
        let v = Value::dict([
            ("sdp", Value::str("v=0")),
            ("command", Value::str("offer")),
            ("n", Value::Int(-3)),
            ("flags", Value::List(vec![Value::str("a"), Value::Int(0)])),
        ]);
        assert_eq!(
            v.encode(),
            b"d7:command5:offer5:flagsl1:ai0ee1:ni-3e3:sdp3:v=0e".to_vec()
        );
    }

    #[test]
    fn round_trips() {
        let v = Value::dict([
            ("result", Value::str("ok")),
            ("list", Value::List(vec![Value::Int(12), Value::str("")])),
            ("inner", Value::dict([("x", Value::Int(0))])),
        ]);
        assert_eq!(Value::decode(&v.encode()), Ok(v));
    }

    #[test]
    fn decodes_a_reply() {
        let v = Value::decode(b"d6:result2:ok3:sdp5:v=0\r\ne").unwrap();
        assert_eq!(
            v.get("result").and_then(Value::as_text).as_deref(),
            Some("ok")
        );
        assert_eq!(
            v.get("sdp").and_then(Value::as_text).as_deref(),
            Some("v=0\r\n")
        );
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [
            &b""[..],
            b"i12",
            b"ie",
            b"i01e",
            b"5:abc",
            b"l",
            b"di1ei2ee",
            b"x",
            b"i1ei2e",
            b"99999999999999999999:x",
        ] {
            assert!(
                Value::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = [b"l".repeat(100), b"e".repeat(100)].concat();
        assert!(Value::decode(&deep).is_err());
    }
}
