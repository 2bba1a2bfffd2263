//! The SDP serializer: lines in the RFC 8866 §5 order, each ended with
//! CRLF (RFC 8866 §5).

use std::fmt::{self, Display, Formatter, Write};

use crate::model::{
    Attribute, Bandwidth, Connection, MediaDescription, Origin, SessionDescription,
};

impl Display for Origin {
    /// The value of the `o=` line.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} IN {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.address.addr_type(),
            self.address
        )
    }
}

impl Display for Connection {
    /// The value of a `c=` line.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "IN {} {}", self.address.addr_type(), self.address)?;
        if let Some(ttl) = self.ttl {
            write!(f, "/{ttl}")?;
        }
        if let Some(count) = self.count {
            write!(f, "/{count}")?;
        }
        Ok(())
    }
}

impl Display for Bandwidth {
    /// The value of a `b=` line.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

impl Display for Attribute {
    /// The value of an `a=` line.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(v) = &self.value {
            write!(f, ":{v}")?;
        }
        Ok(())
    }
}

fn line(f: &mut Formatter<'_>, kind: char, value: impl Display) -> fmt::Result {
    f.write_char(kind)?;
    f.write_char('=')?;
    write!(f, "{value}")?;
    f.write_str("\r\n")
}

impl Display for MediaDescription {
    /// The `m=` section: `m=`, `i=`, `c=`, `b=`, `k=`, `a=` lines.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(n) = self.port_count {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt in &self.formats {
            write!(f, " {fmt}")?;
        }
        f.write_str("\r\n")?;
        if let Some(i) = &self.title {
            line(f, 'i', i)?;
        }
        for c in &self.connections {
            line(f, 'c', c)?;
        }
        for b in &self.bandwidths {
            line(f, 'b', b)?;
        }
        if let Some(k) = &self.key {
            line(f, 'k', k)?;
        }
        for a in &self.attributes {
            line(f, 'a', a)?;
        }
        Ok(())
    }
}

impl Display for SessionDescription {
    /// The whole description, CRLF line ends, RFC 8866 §5 order.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("v=0\r\n")?;
        line(f, 'o', &self.origin)?;
        line(f, 's', &self.session_name)?;
        if let Some(i) = &self.information {
            line(f, 'i', i)?;
        }
        if let Some(u) = &self.uri {
            line(f, 'u', u)?;
        }
        for e in &self.emails {
            line(f, 'e', e)?;
        }
        for p in &self.phones {
            line(f, 'p', p)?;
        }
        if let Some(c) = &self.connection {
            line(f, 'c', c)?;
        }
        for b in &self.bandwidths {
            line(f, 'b', b)?;
        }
        for t in &self.timings {
            line(f, 't', format_args!("{} {}", t.start, t.stop))?;
            for r in &t.repeats {
                line(f, 'r', r)?;
            }
        }
        if let Some(z) = &self.time_zones {
            line(f, 'z', z)?;
        }
        if let Some(k) = &self.key {
            line(f, 'k', k)?;
        }
        for a in &self.attributes {
            line(f, 'a', a)?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}
