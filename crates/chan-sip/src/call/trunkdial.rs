//! Dialling through trunks: who we say is calling (RFC 3325
//! P-Asserted-Identity, `Privacy: id` for a withheld number, RFC 8224
//! Identity) and a list of trunk targets tried one after the other on
//! 5xx, 408 or no answer within the timeout. The carrier's 401/407 is
//! answered by the branch (`outbound.rs`).

use std::time::Instant;

use bytes::Bytes;
use identity::Attestation;
use pbx::DialRequest;

use super::Call;
use crate::target::{Destination, TrunkTarget};
use crate::trunk::to_e164;

/// The identity headers of an INVITE to a trunk.
pub(super) struct TrunkIdentity {
    /// The From value without its tag.
    pub from: String,
    /// P-Asserted-Identity: the number this PBX vouches for.
    pub asserted: Option<String>,
    /// `Privacy: id`: the caller withheld its number.
    pub private: bool,
    /// The `Identity` header (STIR/SHAKEN) when the trunk signs.
    pub signed: Option<String>,
}

/// Whether a failed trunk attempt moves on to the next trunk of the list:
/// the carrier could not take the call (5xx, 408), not "the callee said no".
fn fails_over(status: u16) -> bool {
    status == 408 || (500..600).contains(&status)
}

impl Call {
    /// From, P-Asserted-Identity and Privacy towards `t`: the dialplan's
    /// `caller_id` when set (`"anonymous"` withholds the number), else the
    /// calling extension's `did`, else the trunk's own user; numbers in the
    /// trunk's `caller_id_format`. With `stir_shaken`, the `Identity`
    /// header too (`dest` is the dialled number).
    pub(super) fn trunk_identity(
        &self,
        t: &TrunkTarget,
        request: &DialRequest,
        dest: &str,
    ) -> TrunkIdentity {
        let trunk = &t.trunk;
        let domain = trunk.domain();
        let did = self.record.caller().and_then(|id| {
            self.inner
                .extensions
                .load()
                .get(id)
                .and_then(|e| e.did.clone())
        });
        let asserted = did
            .as_deref()
            .map(|n| format!("<sip:{}@{domain}>", trunk.caller_id_format.write(n)));
        let chosen = request
            .caller_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        let (from, number, private) = if chosen.is_some_and(|c| c.eq_ignore_ascii_case("anonymous"))
        {
            (
                "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_owned(),
                did.clone(),
                true,
            )
        } else {
            let (display, number) = match chosen {
                Some(c) => match self.outbound_identity(Some(c)) {
                    Some((display, user)) => (display, user),
                    None => (None, trunk.own_user().to_owned()),
                },
                None => match &did {
                    Some(n) => (None, n.clone()),
                    None => (None, trunk.own_user().to_owned()),
                },
            };
            let user = trunk.caller_id_format.write(&number);
            let from = match display {
                Some(d) => format!("\"{d}\" <sip:{user}@{domain}>"),
                None => format!("<sip:{user}@{domain}>"),
            };
            (from, Some(number), false)
        };
        let signed = trunk.stir.as_ref().and_then(|key| {
            let number = number.as_deref()?;
            let orig = to_e164(number).unwrap_or_else(|| number.to_owned());
            let owned = did
                .as_deref()
                .is_some_and(|d| to_e164(d).is_some_and(|d| d == orig));
            let attest = self.attestation(request, owned);
            let dest = to_e164(dest).unwrap_or_else(|| dest.to_owned());
            key.sign(&orig, &dest, attest)
        });
        TrunkIdentity {
            from,
            asserted,
            private,
            signed,
        }
    }

    /// The SHAKEN attestation (RFC 8588 §4) of a call out through a trunk:
    /// the dialplan's `attest` when given; A for an extension calling with
    /// its own `did` (`owned`), B for an extension with another number; C
    /// for anything else (a call from a trunk going out again).
    fn attestation(&self, request: &DialRequest, owned: bool) -> Attestation {
        if let Some(a) = request.attest.as_deref().and_then(|a| a.parse().ok()) {
            return a;
        }
        match (self.record.caller(), owned) {
            (Some(_), true) => Attestation::A,
            (Some(_), false) => Attestation::B,
            (None, _) => Attestation::C,
        }
    }

    /// A branch failed with `status`, or its time ran out (`None`): when it
    /// was a trunk of a failover list and the carrier could not take the
    /// call, the next trunk is dialled. `true` when one was.
    pub(super) async fn fail_over(&mut self, id: u32, status: Option<u16>) -> bool {
        if let Some(b) = self.branches.get_mut(&id) {
            b.release_trunk();
        }
        if status.is_some_and(|s| !fails_over(s)) {
            return false;
        }
        let failed = t_name(&self.branches, id);
        let why = status.map_or_else(|| "no answer".to_owned(), |s| s.to_string());
        let is_listed = self.phase.dialing().is_some_and(|d| {
            d.is_target(id) && d.driver.trunks.as_ref().is_some_and(|l| !l.rest.is_empty())
        });
        if !is_listed {
            return false;
        }
        // The next trunk gets the same offer on the same ports.
        let mut media = self.take_branch_media(id).await;
        loop {
            let Some(dialing) = self.phase.dialing_mut() else {
                return false;
            };
            if !dialing.is_target(id) {
                return false;
            }
            let Some(list) = &mut dialing.driver.trunks else {
                return false;
            };
            if list.rest.is_empty() {
                return false;
            }
            let next = list.rest.remove(0);
            let (request, offer, per_try) =
                (list.request.clone(), list.offer.clone(), list.per_try);
            dialing.failed(status.unwrap_or(408));
            let label = next.label.clone();
            self.note(|| format!("{failed} did not take the call ({why}); trying {label}"));
            let (party, offer) = match media.take() {
                Some(party) => (party, offer),
                None => match self.target_media(&next) {
                    Ok(made) => made,
                    Err(failure) => {
                        tracing::warn!("dial: {}", failure.text());
                        continue;
                    }
                },
            };
            if let Some(list) = self
                .phase
                .dialing_mut()
                .and_then(|d| d.driver.trunks.as_mut())
            {
                list.offer = offer.clone();
            }
            if let Some(started) = self.start_branch(next, &request, &offer, party).await {
                if let Some(dialing) = self.phase.dialing_mut() {
                    dialing.retarget(vec![started], Instant::now() + per_try);
                }
                return true;
            }
        }
    }
}

fn t_name(branches: &super::Branches, id: u32) -> String {
    branches
        .get(&id)
        .map_or_else(|| format!("branch {id}"), |b| b.dest.label.clone())
}

/// What a failover list keeps to dial the next trunk.
pub(super) struct Failover {
    /// The trunks not tried yet, in order.
    pub rest: Vec<Destination>,
    /// The dial, for the next INVITE.
    pub request: DialRequest,
    /// Our SDP offer, the same for every attempt (on the same ports, the
    /// media of the trunk tried before).
    pub offer: Bytes,
    /// How long each trunk may take to answer.
    pub per_try: std::time::Duration,
}

impl Failover {
    /// Splits `destinations` when every target is a trunk and there are
    /// several: the first is dialled now, the others wait their turn.
    pub(super) fn split(
        destinations: &mut Vec<Destination>,
        request: &DialRequest,
        per_try: std::time::Duration,
    ) -> Option<Box<Failover>> {
        if destinations.len() < 2 || destinations.iter().any(|d| d.trunk.is_none()) {
            return None;
        }
        let rest = destinations.split_off(1);
        Some(Box::new(Failover {
            rest,
            request: request.clone(),
            offer: Bytes::new(),
            per_try,
        }))
    }
}
