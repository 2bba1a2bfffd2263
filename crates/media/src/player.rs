//! The player: a [`Prompt`] sent on a leg as an RTP stream of our own
//! (RFC 3550 §5.1: a random SSRC, initial sequence number and timestamp;
//! the marker bit on the first packet, RFC 3551 §4.1), one 20 ms frame
//! every 20 ms in the leg's codec (RFC 3551 §4.5: PCMU and PCMA at 8 kHz,
//! G.722 sampled at 16 kHz with an 8000 Hz RTP clock, §4.5.2).
//!
//! Pacing follows an absolute schedule (frame `n` goes out `n × 20 ms`
//! after the start, never earlier; a late task catches up), so the stream
//! does not drift whatever the scheduling delays. A prompt whose rate is
//! not the codec's is resampled (8 ↔ 16 kHz, [`rtp::codec::resample`])
//! frame by frame; the filter's delay (2 ms) cuts as much off the end.
//!
//! While it plays, and after, the task keeps receiving from the leg, so
//! symmetric-RTP latching, RFC 4733 digit detection, RTCP and the media
//! timeout keep working; what arrives is discarded.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rtp::codec::resample::{Downsampler, Upsampler};
use rtp::{Codec, Encoder, PacketBuilder, RtpHeader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::done;
use crate::error::Error;
use crate::leg::{Buffer, Leg, MAX_DATAGRAM};
use crate::prompt::Prompt;

/// The packetization interval of prompts (RFC 3551 §4.5's default for
/// the sample-based codecs).
pub const PTIME: Duration = Duration::from_millis(20);
const PTIME_MS: u32 = 20;

/// A prompt playing on one leg. Dropping it ends the playback and drops
/// the leg; [`Player::stop`] ends it and gives the leg back.
///
/// ```no_run
/// # async fn call(leg: media::Leg) -> Result<(), media::Error> {
/// use std::path::PathBuf;
/// use std::sync::Arc;
/// use media::{Player, Prompt};
///
/// let path = PathBuf::from("sounds/hello.wav");
/// let prompt = tokio::task::spawn_blocking(move || Prompt::load(&path))
///     .await
///     .map_err(|_| media::Error::TaskFailed)??;
/// let mut player = Player::start(leg, Arc::new(prompt));
/// player.finished().await; // or in a select! with the call's events
/// let leg = player.stop().await?;
/// # drop(leg);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Player {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Box<(Leg, Frames)>>,
    finished: done::Wait,
    frames: u64,
}

impl Player {
    /// Starts a task sending `prompt` on `leg` in its negotiated codec and
    /// send payload type. Must be called inside a tokio runtime.
    pub fn start(leg: Leg, prompt: Arc<Prompt>) -> Player {
        Player::begin(leg, prompt, false)
    }

    /// As [`start`](Self::start), from frame `frame` on (a prompt resumed
    /// where [`stop_at`](Self::stop_at) left it, in the leg's codec now).
    pub fn start_from(leg: Leg, prompt: Arc<Prompt>, frame: u64) -> Player {
        Player::begin_at(leg, prompt, false, frame)
    }

    /// Starts a task sending `prompt` over and over (a ringback tone)
    /// until [`Player::stop`]; [`Player::finished`] never returns.
    pub fn start_looped(leg: Leg, prompt: Arc<Prompt>) -> Player {
        Player::begin(leg, prompt, true)
    }

    fn begin(leg: Leg, prompt: Arc<Prompt>, looped: bool) -> Player {
        Player::begin_at(leg, prompt, looped, 0)
    }

    fn begin_at(leg: Leg, prompt: Arc<Prompt>, looped: bool, frame: u64) -> Player {
        let codec = leg.params().codec;
        let mut frames = Frames::new(prompt, codec, leg.params().send_payload_type);
        frames.looped = looped && frames.count > 0;
        frames.sent = frame.min(frames.count);
        // One stream for the phone: a prompt continues what the leg sent.
        if let Some((ssrc, sequence, timestamp)) =
            leg.continuation(codec.clock_rate(), std::time::Instant::now())
        {
            frames.header.ssrc = ssrc;
            frames.header.sequence = sequence;
            frames.header.timestamp = timestamp;
        }
        let count = frames.count;
        let (raise, finished) = done::flag();
        let (stop, stopped) = oneshot::channel();
        // Boxed: a task's future that took them by value would keep room
        // for them twice (arguments and locals).
        let task = tokio::spawn(run(Box::new((leg, frames)), raise, stopped));
        Player {
            stop,
            task,
            finished,
            frames: count,
        }
    }

    /// How many 20 ms packets the prompt takes.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Returns once the whole prompt has been sent (at once for an empty
    /// prompt, and from then on). Cancel-safe: poll it in a `select!` loop
    /// as often as needed. Also returns if the task failed; [`Player::stop`]
    /// then says so.
    pub async fn finished(&mut self) {
        self.finished.wait().await;
    }

    /// Ends the playback (wherever it is) and returns the leg.
    ///
    /// # Errors
    /// [`Error::TaskFailed`] when the player's task did not end normally.
    pub async fn stop(self) -> Result<Leg, Error> {
        self.stop_at().await.map(|(leg, _)| leg)
    }

    /// As [`stop`](Self::stop), also saying how many frames were sent
    /// (where [`start_from`](Self::start_from) picks up).
    ///
    /// # Errors
    /// [`Error::TaskFailed`] when the player's task did not end normally.
    pub async fn stop_at(self) -> Result<(Leg, u64), Error> {
        // The task may have ended already; then there is no one to tell.
        let _ = self.stop.send(());
        let parts = self.task.await.map_err(|_| Error::TaskFailed)?;
        let (leg, frames) = *parts;
        Ok((leg, frames.sent))
    }
}

/// Gives its parts back boxed: a task keeps room for its output from the
/// start, and a leg is over half a kilobyte.
async fn run(
    mut parts: Box<(Leg, Frames)>,
    raise: done::Raise,
    mut stopped: oneshot::Receiver<()>,
) -> Box<(Leg, Frames)> {
    enum Wake {
        Stop,
        Tick,
        Received,
    }
    let mut ticks = tokio::time::interval(PTIME);
    // Burst: a tick missed while the task waited for a CPU is taken at
    // once, so frame n is sent n × 20 ms after the start at the earliest
    // and the stream keeps its schedule.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut playing = parts.1.count > 0;
    if !playing {
        raise.raise();
    }
    loop {
        let (leg, frames) = &mut *parts;
        // The leg is polled in place (its wakers live in its sockets): a
        // waiting player's task keeps no receive buffer.
        let wake = std::future::poll_fn(|cx| {
            if Pin::new(&mut stopped).poll(cx).is_ready() {
                return Poll::Ready(Wake::Stop);
            }
            if playing && ticks.poll_tick(cx).is_ready() {
                return Poll::Ready(Wake::Tick);
            }
            if leg.poll_rtp_ready(cx).is_ready() {
                return Poll::Ready(Wake::Received);
            }
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Stop => break,
            Wake::Tick => {
                if let Some(packet) = frames.next_packet() {
                    leg.send_rtp(packet);
                }
                if frames.sent >= frames.count && !frames.looped {
                    playing = false;
                    raise.raise();
                }
            }
            // Latching, digits, RTCP and the media timeout happen as the
            // leg reads; the audio itself is not wanted.
            Wake::Received => {
                let mut buf: Buffer = [0; MAX_DATAGRAM + 1];
                for _ in 0..READ_BURST {
                    if leg.try_recv(&mut buf).is_none() {
                        break;
                    }
                }
            }
        }
    }
    parts
}

/// Packets read per wake-up before the schedule is looked at again.
const READ_BURST: usize = 16;

/// The prompt cut into 20 ms frames, resampled and encoded, as packets.
#[derive(Debug)]
struct Frames {
    prompt: Arc<Prompt>,
    /// Prompt samples per frame.
    frame_len: usize,
    /// Frames in all; the last one padded with silence.
    count: u64,
    sent: u64,
    /// Start again after the last frame, for ever.
    looped: bool,
    header: RtpHeader,
    timestamp_step: u32,
    encoder: Encoder,
    resampler: Resampler,
    pcm: Vec<i16>,
    resampled: Vec<i16>,
    payload: Vec<u8>,
    packet: Vec<u8>,
}

#[derive(Debug)]
enum Resampler {
    None,
    Up(Upsampler),
    Down(Downsampler),
}

impl Frames {
    fn new(prompt: Arc<Prompt>, codec: Codec, payload_type: u8) -> Frames {
        let rate = prompt.sample_rate();
        let frame_len = (rate * PTIME_MS / 1000) as usize;
        let count = prompt.samples().len().div_ceil(frame_len.max(1)) as u64;
        let resampler = match (rate, codec.sample_rate()) {
            (8000, 16_000) => Resampler::Up(Upsampler::new()),
            (16_000, 8000) => Resampler::Down(Downsampler::new()),
            _ => Resampler::None,
        };
        Frames {
            prompt,
            frame_len,
            count,
            sent: 0,
            looped: false,
            header: RtpHeader {
                marker: true,
                payload_type,
                sequence: rand::random(),
                timestamp: rand::random(),
                ssrc: rand::random(),
            },
            timestamp_step: codec.timestamp_step(PTIME_MS),
            encoder: Encoder::new(codec),
            resampler,
            pcm: Vec::with_capacity(frame_len),
            resampled: Vec::new(),
            payload: Vec::new(),
            packet: Vec::new(),
        }
    }

    /// The next frame's packet; `None` once all were made (or if one
    /// cannot be encoded, which the codecs here never refuse for an even
    /// frame length).
    fn next_packet(&mut self) -> Option<&[u8]> {
        if self.sent >= self.count && !self.looped {
            return None;
        }
        let start = usize::try_from(self.sent % self.count.max(1)).ok()? * self.frame_len;
        let samples = self.prompt.samples();
        let end = (start + self.frame_len).min(samples.len());
        self.pcm.clear();
        self.pcm.extend_from_slice(samples.get(start..end)?);
        self.pcm.resize(self.frame_len, 0);
        let pcm = match &mut self.resampler {
            Resampler::None => &self.pcm,
            Resampler::Up(up) => {
                self.resampled.clear();
                up.process(&self.pcm, &mut self.resampled);
                &self.resampled
            }
            Resampler::Down(down) => {
                self.resampled.clear();
                down.process(&self.pcm, &mut self.resampled);
                &self.resampled
            }
        };
        self.payload.clear();
        let encoded = self.encoder.encode(pcm, &mut self.payload);
        let header = self.header;
        self.sent += 1;
        self.header.marker = false;
        self.header.sequence = self.header.sequence.wrapping_add(1);
        self.header.timestamp = self.header.timestamp.wrapping_add(self.timestamp_step);
        encoded.ok()?;
        let builder = PacketBuilder::new(header).payload(&self.payload);
        self.packet.resize(builder.packet_len().ok()?, 0);
        builder.build_into(&mut self.packet).ok()?;
        Some(&self.packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp::RtpPacket;

    fn frames(rate: u32, n: usize, codec: Codec) -> Frames {
        let prompt = Prompt::from_samples(rate, vec![1000; n]).unwrap();
        Frames::new(Arc::new(prompt), codec, 96)
    }

    #[test]
    fn frames_are_numbered_and_sized_for_the_codec() {
        let mut f = frames(8000, 160 * 3 + 1, Codec::G722);
        assert_eq!(f.count, 4);
        let mut last: Option<RtpHeader> = None;
        for i in 0..4 {
            let p = f.next_packet().unwrap().to_vec();
            let p = RtpPacket::parse(&p).unwrap();
            let h = p.header();
            assert_eq!(h.marker, i == 0);
            assert_eq!(h.payload_type, 96);
            assert_eq!(p.payload().len(), 160);
            if let Some(l) = last {
                assert_eq!(h.sequence, l.sequence.wrapping_add(1));
                assert_eq!(h.timestamp, l.timestamp.wrapping_add(160));
                assert_eq!(h.ssrc, l.ssrc);
            }
            last = Some(h);
        }
        assert!(f.next_packet().is_none());
    }

    #[test]
    fn a_16k_prompt_is_downsampled_for_pcma() {
        let mut f = frames(16_000, 640, Codec::Pcma);
        assert_eq!(f.count, 2);
        let p = f.next_packet().unwrap().to_vec();
        assert_eq!(RtpPacket::parse(&p).unwrap().payload().len(), 160);
        assert!(frames(8000, 0, Codec::Pcmu).next_packet().is_none());
    }
}
