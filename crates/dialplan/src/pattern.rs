//! Lua 5.4 patterns (Lua 5.4 reference manual §6.4.1) matched in Rust with
//! a step count, so that a careless pattern on a caller's input
//! (`("a"):rep(220):find("^a*a*a*a*b")`) ends with an error after a bounded
//! amount of work instead of backtracking for hours inside C, where the
//! instruction hook never fires.
//!
//! The matcher is a backtracking matcher with the semantics of the stock
//! one (same classes in the "C" locale, same rules for `%b`, `%f`, back
//! references, position captures, 32 captures, nesting depth 200), written
//! here from the manual; `strlib.rs` puts it behind `string.find`,
//! `string.match`, `string.gmatch` and `string.gsub`.

/// Most captures in one pattern (as stock Lua).
pub(crate) const MAX_CAPTURES: usize = 32;

/// Deepest nesting of the matcher's backtracking (as stock Lua's
/// `MAXCCALLS`): a pattern deeper than that is "too complex".
const MAX_DEPTH: usize = 200;

/// What stops a match: a malformed pattern, or too much work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PatternError {
    /// The pattern ends with a lone `%`.
    #[error("malformed pattern (ends with '%')")]
    EndsWithEscape,
    /// A `[set]` is not closed.
    #[error("malformed pattern (missing ']')")]
    MissingBracket,
    /// `%b` is not followed by two characters.
    #[error("malformed pattern (missing arguments to '%b')")]
    MissingBalanceArguments,
    /// `%f` is not followed by a `[set]`.
    #[error("missing '[' after '%f' in pattern")]
    FrontierWithoutSet,
    /// `%N` names a capture that does not exist (yet).
    #[error("invalid capture index %{0} in pattern")]
    InvalidCaptureIndex(usize),
    /// `%N` in a replacement string names a capture the pattern lacks.
    #[error("invalid capture index %{0} in replacement string")]
    InvalidReplacementIndex(usize),
    /// A `)` without its `(`.
    #[error("invalid pattern capture")]
    InvalidPatternCapture,
    /// A `(` never closed by the end of the match.
    #[error("unfinished capture")]
    UnfinishedCapture,
    /// More than [`MAX_CAPTURES`] captures.
    #[error("too many captures")]
    TooManyCaptures,
    /// Backtracking nested deeper than stock Lua allows.
    #[error("pattern too complex")]
    TooComplex,
    /// The match took more steps than allowed.
    #[error(
        "pattern too expensive: stopped after {0} matching steps (check the input's length before matching, or anchor and simplify the pattern)"
    )]
    TooManySteps(u64),
}

/// The length of a capture while matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaptureLen {
    /// `(` seen, `)` not yet.
    Open,
    /// `()`: captures the position.
    Position,
    /// Closed, this many bytes.
    Bytes(usize),
}

#[derive(Debug, Clone, Copy)]
struct Capture {
    start: usize,
    len: CaptureLen,
}

/// One capture of a successful match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Captured {
    /// A substring of the subject, by byte range.
    Text(std::ops::Range<usize>),
    /// A position capture `()`: 1-based, as Lua gives it.
    Position(usize),
}

/// A subject, a pattern, and the work done so far: one per call of a
/// pattern function (its steps add up over every start position tried).
#[derive(Debug)]
pub(crate) struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    captures: Vec<Capture>,
    depth_left: usize,
    steps: u64,
    limit: u64,
}

impl<'a> Matcher<'a> {
    /// A matcher of `pat` over `src` that stops after `limit` steps.
    pub(crate) fn new(src: &'a [u8], pat: &'a [u8], limit: u64) -> Self {
        Self {
            src,
            pat,
            captures: Vec::new(),
            depth_left: MAX_DEPTH,
            steps: 0,
            limit,
        }
    }

    /// The steps taken so far (over every attempt).
    pub(crate) fn steps(&self) -> u64 {
        self.steps
    }

    /// Matches the pattern from byte `p` on, starting at subject byte `s`
    /// (no anchoring, no retrying elsewhere): the end of the match, if any.
    pub(crate) fn match_at(&mut self, s: usize, p: usize) -> Result<Option<usize>, PatternError> {
        self.captures.clear();
        self.depth_left = MAX_DEPTH;
        self.do_match(s, p)
    }

    /// Capture `i` (0-based) of the match `s..e`: with no captures, capture
    /// 0 is the whole match.
    pub(crate) fn capture(&self, i: usize, s: usize, e: usize) -> Result<Captured, PatternError> {
        let Some(c) = self.captures.get(i) else {
            if i != 0 {
                return Err(PatternError::InvalidReplacementIndex(i + 1));
            }
            return Ok(Captured::Text(s..e));
        };
        match c.len {
            CaptureLen::Open => Err(PatternError::UnfinishedCapture),
            CaptureLen::Position => Ok(Captured::Position(c.start + 1)),
            CaptureLen::Bytes(n) => Ok(Captured::Text(c.start..c.start + n)),
        }
    }

    /// Every capture of the match `s..e`; with none, the whole match if
    /// `whole_if_none` (what `match`, `gmatch` and `gsub` give) or nothing
    /// (what `find` adds after the positions).
    pub(crate) fn captures(
        &self,
        s: usize,
        e: usize,
        whole_if_none: bool,
    ) -> Result<Vec<Captured>, PatternError> {
        let n = match self.captures.len() {
            0 if whole_if_none => 1,
            n => n,
        };
        (0..n).map(|i| self.capture(i, s, e)).collect()
    }

    fn step(&mut self) -> Result<(), PatternError> {
        self.steps += 1;
        if self.steps > self.limit {
            Err(PatternError::TooManySteps(self.limit))
        } else {
            Ok(())
        }
    }

    fn do_match(&mut self, s: usize, p: usize) -> Result<Option<usize>, PatternError> {
        if self.depth_left == 0 {
            return Err(PatternError::TooComplex);
        }
        self.depth_left -= 1;
        let result = self.match_items(s, p);
        self.depth_left += 1;
        result
    }

    /// The matcher proper: pattern items one after another, recursing only
    /// where it may have to come back (captures, `?`, repetitions).
    fn match_items(&mut self, mut s: usize, mut p: usize) -> Result<Option<usize>, PatternError> {
        loop {
            self.step()?;
            let Some(&item) = self.pat.get(p) else {
                return Ok(Some(s));
            };
            let next = self.pat.get(p + 1).copied();
            match (item, next) {
                (b'(', Some(b')')) => return self.start_capture(s, p + 2, CaptureLen::Position),
                (b'(', _) => return self.start_capture(s, p + 1, CaptureLen::Open),
                (b')', _) => return self.end_capture(s, p + 1),
                (b'$', None) => return Ok((s == self.src.len()).then_some(s)),
                (b'%', Some(b'b')) => match self.match_balance(s, p + 2)? {
                    Some(end) => {
                        s = end;
                        p += 4;
                    }
                    None => return Ok(None),
                },
                (b'%', Some(b'f')) => {
                    p += 2;
                    if self.pat.get(p) != Some(&b'[') {
                        return Err(PatternError::FrontierWithoutSet);
                    }
                    let end = self.class_end(p)?;
                    let before = if s == 0 { 0 } else { self.src[s - 1] };
                    let here = self.src.get(s).copied().unwrap_or(0);
                    if !self.in_set(before, p, end - 1) && self.in_set(here, p, end - 1) {
                        p = end;
                    } else {
                        return Ok(None);
                    }
                }
                (b'%', Some(d)) if d.is_ascii_digit() => match self.match_back_reference(s, d)? {
                    Some(end) => {
                        s = end;
                        p += 2;
                    }
                    None => return Ok(None),
                },
                _ => {
                    let end = self.class_end(p)?;
                    let suffix = self.pat.get(end).copied();
                    if !self.single(s, p, end) {
                        if matches!(suffix, Some(b'*' | b'?' | b'-')) {
                            p = end + 1;
                            continue;
                        }
                        return Ok(None);
                    }
                    match suffix {
                        Some(b'?') => {
                            if let Some(found) = self.do_match(s + 1, end + 1)? {
                                return Ok(Some(found));
                            }
                            p = end + 1;
                        }
                        Some(b'+') => return self.longest(s + 1, p, end),
                        Some(b'*') => return self.longest(s, p, end),
                        Some(b'-') => return self.shortest(s, p, end),
                        _ => {
                            s += 1;
                            p = end;
                        }
                    }
                }
            }
        }
    }

    /// `item*` (and `item+` after its first): as many as possible, then
    /// fewer until the rest matches.
    fn longest(&mut self, s: usize, p: usize, end: usize) -> Result<Option<usize>, PatternError> {
        let mut n = 0;
        while self.single(s + n, p, end) {
            self.step()?;
            n += 1;
        }
        loop {
            if let Some(found) = self.do_match(s + n, end + 1)? {
                return Ok(Some(found));
            }
            if n == 0 {
                return Ok(None);
            }
            n -= 1;
        }
    }

    /// `item-`: as few as possible, one more each time the rest fails.
    fn shortest(
        &mut self,
        mut s: usize,
        p: usize,
        end: usize,
    ) -> Result<Option<usize>, PatternError> {
        loop {
            if let Some(found) = self.do_match(s, end + 1)? {
                return Ok(Some(found));
            }
            if !self.single(s, p, end) {
                return Ok(None);
            }
            s += 1;
        }
    }

    fn start_capture(
        &mut self,
        s: usize,
        p: usize,
        len: CaptureLen,
    ) -> Result<Option<usize>, PatternError> {
        if self.captures.len() >= MAX_CAPTURES {
            return Err(PatternError::TooManyCaptures);
        }
        self.captures.push(Capture { start: s, len });
        let found = self.do_match(s, p)?;
        if found.is_none() {
            self.captures.pop();
        }
        Ok(found)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Result<Option<usize>, PatternError> {
        let open = self
            .captures
            .iter()
            .rposition(|c| c.len == CaptureLen::Open)
            .ok_or(PatternError::InvalidPatternCapture)?;
        let start = self.captures[open].start;
        self.captures[open].len = CaptureLen::Bytes(s - start);
        let found = self.do_match(s, p)?;
        if found.is_none() {
            self.captures[open].len = CaptureLen::Open;
        }
        Ok(found)
    }

    /// `%1`–`%9`: the same text as that (closed) capture again.
    fn match_back_reference(&mut self, s: usize, digit: u8) -> Result<Option<usize>, PatternError> {
        let index = usize::from(digit - b'0');
        let capture = index
            .checked_sub(1)
            .and_then(|i| self.captures.get(i))
            .filter(|c| c.len != CaptureLen::Open)
            .ok_or(PatternError::InvalidCaptureIndex(index))?;
        let CaptureLen::Bytes(len) = capture.len else {
            // A position capture has no text: never matches (as stock Lua).
            return Ok(None);
        };
        let wanted = &self.src[capture.start..capture.start + len];
        Ok(self
            .src
            .get(s..s + len)
            .filter(|here| *here == wanted)
            .map(|_| s + len))
    }

    /// `%bxy` with `p` at `x`.
    fn match_balance(&mut self, s: usize, p: usize) -> Result<Option<usize>, PatternError> {
        let (Some(&open), Some(&close)) = (self.pat.get(p), self.pat.get(p + 1)) else {
            return Err(PatternError::MissingBalanceArguments);
        };
        if self.src.get(s) != Some(&open) {
            return Ok(None);
        }
        let mut depth = 1usize;
        for i in s + 1..self.src.len() {
            self.step()?;
            let c = self.src[i];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
        }
        Ok(None)
    }

    /// Where the single-character item at `p` ends (past a `%x` or a
    /// `[set]`).
    fn class_end(&self, p: usize) -> Result<usize, PatternError> {
        let len = self.pat.len();
        match self.pat[p] {
            b'%' if p + 1 >= len => Err(PatternError::EndsWithEscape),
            b'%' => Ok(p + 2),
            b'[' => {
                let mut q = p + 1;
                if self.pat.get(q) == Some(&b'^') {
                    q += 1;
                }
                // The first character of a set is never its end, so `[]]`
                // and `[^]]` are sets holding `]`.
                loop {
                    if q >= len {
                        return Err(PatternError::MissingBracket);
                    }
                    let c = self.pat[q];
                    q += 1;
                    if c == b'%' && q < len {
                        q += 1;
                    }
                    if self.pat.get(q) == Some(&b']') {
                        return Ok(q + 1);
                    }
                }
            }
            _ => Ok(p + 1),
        }
    }

    /// Whether subject byte `s` exists and matches the item `p..end`.
    fn single(&self, s: usize, p: usize, end: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.pat[p] {
            b'.' => true,
            b'%' => class_matches(c, self.pat[p + 1]),
            b'[' => self.in_set(c, p, end - 1),
            literal => literal == c,
        }
    }

    /// Whether `c` is in the set from `[` at `p` to `]` at `close`.
    fn in_set(&self, c: u8, p: usize, close: usize) -> bool {
        let mut q = p + 1;
        let negated = self.pat.get(q) == Some(&b'^');
        if negated {
            q += 1;
        }
        while q < close {
            let item = self.pat[q];
            if item == b'%' && q + 1 < close {
                if class_matches(c, self.pat[q + 1]) {
                    return !negated;
                }
                q += 2;
            } else if self.pat.get(q + 1) == Some(&b'-') && q + 2 < close {
                if item <= c && c <= self.pat[q + 2] {
                    return !negated;
                }
                q += 3;
            } else {
                if item == c {
                    return !negated;
                }
                q += 1;
            }
        }
        negated
    }
}

/// `%a`, `%d`, … (upper case: the complement), in the "C" locale; any
/// other character after `%` stands for itself.
fn class_matches(c: u8, class: u8) -> bool {
    let matches = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => c == b' ' || (b'\t'..=b'\r').contains(&c),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        // Deprecated since Lua 5.2, still accepted by 5.4.
        b'z' => c == 0,
        _ => return class == c,
    };
    if class.is_ascii_uppercase() {
        !matches
    } else {
        matches
    }
}

/// Whether `pat` has none of the characters that make it a pattern (then
/// `find` searches for it as plain text).
pub(crate) fn is_plain(pat: &[u8]) -> bool {
    !pat.iter().any(|c| b"^$*+?.([%-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(src: &str, pat: &str) -> Result<Option<(usize, usize)>, PatternError> {
        let (pat, anchored) = match pat.strip_prefix('^') {
            Some(rest) => (rest, true),
            None => (pat, false),
        };
        let mut m = Matcher::new(src.as_bytes(), pat.as_bytes(), 1_000_000);
        for s in 0..=src.len() {
            if let Some(e) = m.match_at(s, 0)? {
                return Ok(Some((s, e)));
            }
            if anchored {
                break;
            }
        }
        Ok(None)
    }

    #[test]
    fn catastrophic_backtracking_stops_at_the_step_limit() {
        let src = "a".repeat(220);
        assert_eq!(
            find(&src, "^a*a*a*a*b"),
            Err(PatternError::TooManySteps(1_000_000))
        );
    }

    #[test]
    fn ordinary_patterns_match() {
        assert_eq!(find("1234", "^1%d%d%d$"), Ok(Some((0, 4))));
        assert_eq!(find("x(a(b)c)y", "%b()"), Ok(Some((1, 8))));
        assert_eq!(find("THE (quick) fox", "%f[%a]%a+"), Ok(Some((0, 3))));
        assert_eq!(find("abc", "[]"), Err(PatternError::MissingBracket));
        assert_eq!(find("abc", "%"), Err(PatternError::EndsWithEscape));
        assert_eq!(find("]", "[]]"), Ok(Some((0, 1))));
    }
}
