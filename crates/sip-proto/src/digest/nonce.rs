//! Stateless nonces and nonce-count replay tracking (RFC 7616 §3.3, §3.4,
//! §5.4–§5.5; RFC 3261 §22.4): a nonce carries its own timestamp and MAC, so
//! any node holding the key can check it without remembering it.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use hmac::digest::{Key, KeyInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::hash::hex;

/// How far in the future a nonce's timestamp may be before it is
/// [`NonceCheck::Invalid`] (clock skew between nodes sharing a key).
pub const MAX_FUTURE_SKEW_SECS: u64 = 5;

/// The length of a nonce from [`NonceKey::issue`]: 36 bytes in lowercase hex.
pub const NONCE_LEN: usize = 72;

const TS_LEN: usize = 8;
const RANDOM_LEN: usize = 12;
const MAC_LEN: usize = 16;
const BODY_LEN: usize = TS_LEN + RANDOM_LEN;
const RAW_LEN: usize = BODY_LEN + MAC_LEN;

/// The secret that signs nonces: 32 bytes the caller generates once (and
/// shares between nodes that must accept each other's nonces).
///
/// A nonce is lowercase hex of `timestamp (u64 BE unix seconds) || random
/// (12 bytes) || HMAC-SHA256(key, timestamp || random || client)[..16]`.
/// `client` is not in the nonce: it names who the nonce was issued to (a
/// registrar passes the source address), so a nonce handed to one client
/// is [`NonceCheck::Invalid`] when another sends it back
/// ([`issue_for`](Self::issue_for), [`verify_for`](Self::verify_for)).
/// `Debug` does not show the key.
#[derive(Clone)]
pub struct NonceKey {
    // The keyed HMAC state, so each nonce costs two compressions, not four.
    mac: Hmac<Sha256>,
}

impl NonceKey {
    /// A key from 32 secret bytes.
    pub fn new(key: [u8; 32]) -> NonceKey {
        // HMAC (RFC 2104) pads a short key with zeros to the block size, so
        // keying with the 64-byte block `key || 0*32` is the same function,
        // and `KeyInit::new` on a block-sized key cannot fail (unlike
        // `new_from_slice`).
        let mut block = Key::<Hmac<Sha256>>::default();
        block[..key.len()].copy_from_slice(&key);
        NonceKey {
            mac: <Hmac<Sha256> as KeyInit>::new(&block),
        }
    }

    fn tag(&self, body: &[u8], client: &[u8]) -> [u8; MAC_LEN] {
        let mut m = self.mac.clone();
        m.update(body);
        m.update(client);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// A fresh nonce issued at `now_unix_secs`; `random` must come from a
    /// CSPRNG (it keeps two nonces of the same second apart).
    pub fn issue(&self, now_unix_secs: u64, random: [u8; 12]) -> String {
        self.issue_for(now_unix_secs, random, &[])
    }

    /// A fresh nonce bound to `client` (e.g. the bytes of the source
    /// address it is sent to): only [`verify_for`](Self::verify_for) with
    /// the same `client` accepts it.
    pub fn issue_for(&self, now_unix_secs: u64, random: [u8; 12], client: &[u8]) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[..TS_LEN].copy_from_slice(&now_unix_secs.to_be_bytes());
        raw[TS_LEN..BODY_LEN].copy_from_slice(&random);
        let tag = self.tag(&raw[..BODY_LEN], client);
        raw[BODY_LEN..].copy_from_slice(&tag);
        hex(&raw)
    }

    /// Checks a nonce a client sent back: [`NonceCheck::Invalid`] if it is
    /// not one of ours (wrong length, not lowercase hex, MAC mismatch —
    /// compared in constant time) or claims to be issued more than
    /// [`MAX_FUTURE_SKEW_SECS`] after `now_unix_secs`;
    /// [`NonceCheck::Stale`] if ours but older than `max_age_secs`.
    pub fn verify(&self, nonce: &str, now_unix_secs: u64, max_age_secs: u64) -> NonceCheck {
        self.verify_for(nonce, now_unix_secs, max_age_secs, &[])
    }

    /// [`verify`](Self::verify) for a nonce from
    /// [`issue_for`](Self::issue_for): [`NonceCheck::Invalid`] also when it
    /// was issued to another `client`.
    pub fn verify_for(
        &self,
        nonce: &str,
        now_unix_secs: u64,
        max_age_secs: u64,
        client: &[u8],
    ) -> NonceCheck {
        let Some(raw) = unhex::<RAW_LEN>(nonce) else {
            return NonceCheck::Invalid;
        };
        let tag = self.tag(&raw[..BODY_LEN], client);
        if !bool::from(tag.ct_eq(&raw[BODY_LEN..])) {
            return NonceCheck::Invalid;
        }
        let mut ts = [0u8; TS_LEN];
        ts.copy_from_slice(&raw[..TS_LEN]);
        let issued_at = u64::from_be_bytes(ts);
        if issued_at > now_unix_secs.saturating_add(MAX_FUTURE_SKEW_SECS) {
            return NonceCheck::Invalid;
        }
        if now_unix_secs.saturating_sub(issued_at) > max_age_secs {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid { issued_at }
    }
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceKey(<redacted>)")
    }
}

/// What [`NonceKey::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours, and young enough.
    Valid {
        /// When it was issued (unix seconds).
        issued_at: u64,
    },
    /// Ours, but older than the maximum age: if the response is right,
    /// challenge again with `stale=true` (RFC 7616 §3.3).
    Stale,
    /// Not ours (forged, corrupted, or from the future).
    Invalid,
}

/// Decodes exactly `2 * N` lowercase hex digits.
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// What [`NonceCounts::check_and_record`] decided about a nonce-count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcCheck {
    /// Higher than any count seen for this nonce: recorded, accept.
    Accepted,
    /// Not higher than the last count seen for this nonce: a replay, reject.
    Replayed,
    /// The tracker may have forgotten this nonce (it was evicted or expired,
    /// or the nonce is older than something that was): it cannot tell a
    /// replay, so the request must not be accepted. Answer as for a stale
    /// nonce (`stale=true`, a fresh nonce); the client retries at once.
    Forgotten,
}

#[derive(Debug, Clone, Copy)]
struct Count {
    highest: u32,
    issued_at: u64,
}

/// The highest nonce-count seen per nonce, in bounded memory (RFC 7616
/// §3.4 and §5.5: a server that tracks `nc` detects replayed requests).
///
/// Sans-IO: time is passed in as unix seconds. Each entry is ~50 bytes
/// (the key is 16 bytes of SHA-256 of the nonce). Entries leave when their
/// nonce is older than `max_age_secs` (then [`NonceKey::verify`] calls it
/// stale anyway), or, once `capacity` entries are held, the oldest recorded
/// one leaves to make room.
///
/// **Eviction trade-off.** A forgotten nonce could be replayed, so the
/// tracker remembers the newest issue time of anything it dropped and
/// answers [`NcCheck::Forgotten`] for any nonce not held that was issued
/// at or before it: such a request gets a fresh challenge with
/// `stale=true`, never acceptance. The cost is that when the table is full,
/// clients whose nonces were pushed out (and, briefly, never-seen nonces
/// issued before the evicted one) re-authenticate once. Only requests with
/// a correct digest reach the tracker (see [`super::verify`]), so filling
/// it takes valid credentials; size `capacity` above the number of
/// clients that re-use a nonce within `max_age_secs`.
#[derive(Debug, Clone)]
pub struct NonceCounts {
    counts: HashMap<[u8; 16], Count>,
    // Keys in the order they were recorded, each exactly once.
    order: VecDeque<[u8; 16]>,
    capacity: usize,
    max_age_secs: u64,
    // Every dropped nonce was issued at or before this.
    forgotten_up_to: Option<u64>,
}

impl NonceCounts {
    /// A tracker holding at most `capacity` nonces (at least 1), each for
    /// `max_age_secs` after its issue time (use the nonce max age).
    pub fn new(capacity: usize, max_age_secs: u64) -> NonceCounts {
        let capacity = capacity.max(1);
        NonceCounts {
            counts: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            max_age_secs,
            forgotten_up_to: None,
        }
    }

    /// How many nonces are tracked.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether no nonce is tracked.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The most nonces this tracker holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Checks `nc` for `nonce` (issued at `issued_at`, from
    /// [`NonceCheck::Valid`]) and records it if it is new and higher.
    /// Call only after the request's digest was found correct.
    pub fn check_and_record(&mut self, nonce: &str, issued_at: u64, nc: u32, now: u64) -> NcCheck {
        self.expire(now);
        let key = key_of(nonce);
        if let Some(c) = self.counts.get_mut(&key) {
            if nc <= c.highest {
                return NcCheck::Replayed;
            }
            c.highest = nc;
            return NcCheck::Accepted;
        }
        if self.forgotten(issued_at) {
            return NcCheck::Forgotten;
        }
        if self.counts.len() >= self.capacity {
            self.drop_oldest();
            // The entry dropped may have been issued after this nonce.
            if self.forgotten(issued_at) {
                return NcCheck::Forgotten;
            }
        }
        self.counts.insert(
            key,
            Count {
                highest: nc,
                issued_at,
            },
        );
        self.order.push_back(key);
        NcCheck::Accepted
    }

    /// Drops entries from the front whose nonce has expired. Entries are
    /// recorded in roughly issue order; one that expires behind a younger
    /// front stays until it reaches the front (harmless: its nonce is stale).
    fn expire(&mut self, now: u64) {
        while let Some(front) = self.order.front() {
            let expired = self
                .counts
                .get(front)
                .is_none_or(|c| c.issued_at.saturating_add(self.max_age_secs) < now);
            if !expired {
                break;
            }
            self.drop_oldest();
        }
    }

    fn forgotten(&self, issued_at: u64) -> bool {
        self.forgotten_up_to.is_some_and(|t| issued_at <= t)
    }

    fn drop_oldest(&mut self) {
        if let Some(key) = self.order.pop_front()
            && let Some(c) = self.counts.remove(&key)
        {
            self.forgotten_up_to = Some(
                self.forgotten_up_to
                    .map_or(c.issued_at, |t| t.max(c.issued_at)),
            );
        }
    }
}

fn key_of(nonce: &str) -> [u8; 16] {
    let full = Sha256::digest(nonce.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&full[..16]);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000;

    fn key() -> NonceKey {
        NonceKey::new([7; 32])
    }

    #[test]
    fn issue_and_verify() {
        let n = key().issue(T, [1; 12]);
        assert_eq!(n.len(), NONCE_LEN);
        assert_ne!(n, key().issue(T, [2; 12]));
        assert_eq!(key().verify(&n, T, 300), NonceCheck::Valid { issued_at: T });
        assert_eq!(
            key().verify(&n, T + 300, 300),
            NonceCheck::Valid { issued_at: T }
        );
        assert_eq!(key().verify(&n, T + 301, 300), NonceCheck::Stale);
        // Small skew into the future is tolerated, more is not.
        assert_eq!(
            key().verify(&n, T - MAX_FUTURE_SKEW_SECS, 300),
            NonceCheck::Valid { issued_at: T }
        );
        assert_eq!(
            key().verify(&n, T - MAX_FUTURE_SKEW_SECS - 1, 300),
            NonceCheck::Invalid
        );
        // Another key's nonce.
        assert_eq!(
            NonceKey::new([8; 32]).verify(&n, T, 300),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn a_nonce_is_good_only_for_its_client() {
        let k = key();
        let n = k.issue_for(T, [3; 12], &[127, 0, 0, 1]);
        assert_eq!(
            k.verify_for(&n, T, 300, &[127, 0, 0, 1]),
            NonceCheck::Valid { issued_at: T }
        );
        assert_eq!(
            k.verify_for(&n, T, 300, &[127, 0, 0, 2]),
            NonceCheck::Invalid
        );
        assert_eq!(k.verify(&n, T, 300), NonceCheck::Invalid);
        // A stale nonce is stale only for its own client.
        assert_eq!(
            k.verify_for(&n, T + 301, 300, &[127, 0, 0, 1]),
            NonceCheck::Stale
        );
        assert_eq!(
            k.verify_for(&n, T + 301, 300, &[127, 0, 0, 2]),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn tampered_and_garbage() {
        let k = key();
        let n = k.issue(T, [9; 12]);
        // Every single-digit change is caught (timestamp, random or MAC).
        for i in 0..n.len() {
            let mut b = n.clone().into_bytes();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            let t = String::from_utf8(b).unwrap();
            assert_eq!(k.verify(&t, T, 300), NonceCheck::Invalid, "digit {i}");
        }
        // A moved timestamp (e.g. to make an old nonce young) breaks the MAC.
        let forged = format!("{}{}", hex(&(T + 1000).to_be_bytes()), &n[16..]);
        assert_eq!(k.verify(&forged, T + 1000, 300), NonceCheck::Invalid);
        for g in [
            "",
            "x",
            &n.to_uppercase(),
            &n[..70],
            &format!("{n}00"),
            &"é".repeat(36),
        ] {
            assert_eq!(k.verify(g, T, 300), NonceCheck::Invalid, "{g}");
        }
        assert!(format!("{k:?}").contains("redacted"));
    }

    #[test]
    fn counts_reject_replays() {
        let mut c = NonceCounts::new(10, 300);
        assert_eq!(c.check_and_record("a", T, 1, T), NcCheck::Accepted);
        assert_eq!(c.check_and_record("a", T, 1, T), NcCheck::Replayed);
        assert_eq!(c.check_and_record("a", T, 2, T), NcCheck::Accepted);
        assert_eq!(c.check_and_record("a", T, 5, T), NcCheck::Accepted);
        assert_eq!(c.check_and_record("a", T, 3, T), NcCheck::Replayed);
        assert_eq!(c.check_and_record("b", T, 1, T), NcCheck::Accepted);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn counts_expire_and_forget_safely() {
        let mut c = NonceCounts::new(10, 300);
        assert_eq!(c.check_and_record("a", T, 1, T), NcCheck::Accepted);
        assert_eq!(
            c.check_and_record("b", T + 100, 1, T + 100),
            NcCheck::Accepted
        );
        // "a" expires; a replay of it is not accepted as new.
        assert_eq!(
            c.check_and_record("b", T + 100, 2, T + 301),
            NcCheck::Accepted
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c.check_and_record("a", T, 1, T + 301), NcCheck::Forgotten);
        // A nonce issued later is fine.
        assert_eq!(
            c.check_and_record("c", T + 301, 1, T + 301),
            NcCheck::Accepted
        );
    }

    #[test]
    fn counts_cap_evicts_oldest() {
        let mut c = NonceCounts::new(3, 300);
        for (i, n) in ["a", "b", "c"].into_iter().enumerate() {
            assert_eq!(
                c.check_and_record(n, T + i as u64, 1, T + 3),
                NcCheck::Accepted
            );
        }
        // Full: "a" leaves to make room for "d".
        assert_eq!(c.check_and_record("d", T + 3, 1, T + 3), NcCheck::Accepted);
        assert_eq!(c.len(), 3);
        // "a" replayed after eviction: forgotten, never accepted.
        assert_eq!(c.check_and_record("a", T, 9, T + 3), NcCheck::Forgotten);
        assert_eq!(c.check_and_record("d", T + 3, 1, T + 3), NcCheck::Replayed);
        // A flood stays within the cap.
        for i in 0..1000u64 {
            c.check_and_record(&i.to_string(), T + 10 + i, 1, T + 10 + i);
            assert!(c.len() <= c.capacity());
        }
        assert_eq!(c.order.len(), c.counts.len());
    }
}
