//! The recorder: what the peer sends on a leg, decoded (RFC 3551 §4.5:
//! PCMU and PCMA at 8 kHz, G.722 at 16 kHz) into one mono recording at
//! the codec's sample rate, up to a maximum length.
//!
//! Packets go through a [`rtp::JitterBuffer`], which puts them back in
//! sequence order (RFC 3550 §5.1) and drops duplicates, and are then laid
//! down by their RTP timestamps: the recording's length is media time.
//! Lost packets, and the pauses of a sender that suppresses silence,
//! become silence of the length their timestamps say (up to
//! [`MAX_GAP`]; a larger jump, or a new SSRC, is a new stream that simply
//! continues the recording). Silence is never laid down faster than real
//! time: with it, the recording is at most [`FILL_SLACK`] longer than the
//! time since its first packet, so a sender whose timestamps jump cannot
//! fill an hour's recording in seconds. Telephone-events and comfort noise are not
//! recorded (digits are still detected by the leg).
//!
//! Like the other media tasks, it keeps receiving after it is full, so
//! latching, digits, RTCP and the media timeout keep working until it is
//! stopped. It sends no RTP.

use std::path::Path;
use std::time::{Duration, Instant};

use rtp::{Codec, Decoder, JitterBuffer, Playout, PushOutcome, RtpHeader, RtpPacket};
use std::sync::Arc;

use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use crate::done;
use crate::error::Error;
use crate::leg::{Leg, PayloadKind, buffer};
use crate::prompt::{samples_duration, write_wav};

/// The longest recording a [`Recorder`] makes; a longer `max` is cut to
/// this (an hour of 16 kHz audio is 115 MB).
pub const MAX_RECORDING: Duration = Duration::from_secs(60 * 60);

/// The longest timestamp gap filled with silence; a larger jump is taken
/// as a new stream.
pub const MAX_GAP: Duration = Duration::from_secs(10);

/// How far silence filled in for a timestamp gap may take a recording
/// past the real time since its first packet.
pub const FILL_SLACK: Duration = Duration::from_secs(1);

/// How long packets wait in the jitter buffer for late ones.
const JITTER_DELAY: Duration = Duration::from_millis(60);

/// Packets the jitter buffer holds at most (two seconds of 20 ms
/// packets: a burst after a network stall is not cut).
const JITTER_CAPACITY: usize = 100;

/// Samples whose magnitude stays below this are silence (about -36 dBFS),
/// for [`Recorder::start_until_silence`].
const SILENCE_LEVEL: u16 = 500;
/// How often a recorder that stops at silence checks for it.
const SILENCE_TICK: Duration = Duration::from_millis(100);
/// What is kept of the silence that ended a recording.
const SILENCE_KEPT: Duration = Duration::from_millis(200);

/// Recorded audio: 16-bit mono PCM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// Samples per second: the codec's PCM rate, 8000 or 16000 Hz.
    pub sample_rate: u32,
    /// The samples; lost packets are zeros.
    pub samples: Vec<i16>,
}

impl Recording {
    /// How long it plays.
    pub fn duration(&self) -> Duration {
        samples_duration(self.samples.len(), self.sample_rate)
    }

    /// Writes it as a WAV file (RIFF, 16-bit PCM, mono), replacing any
    /// file at `path`. Blocking IO: from async code, call it in
    /// `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    /// [`Error::WriteWav`] naming `path` when it cannot be written.
    pub fn write_wav(&self, path: &Path) -> Result<(), Error> {
        write_wav(path, self.sample_rate, &self.samples)
    }
}

/// A leg being recorded. Dropping it ends the task and drops the leg and
/// the recording; [`Recorder::stop`] ends it and gives both back.
///
/// Its length is media time: a peer that sends nothing never fills it, so
/// the call also awaits its own limits (the media timeout, a `#` digit, a
/// wall-clock deadline).
///
/// ```no_run
/// # async fn call(leg: media::Leg) -> Result<(), media::Error> {
/// use std::path::PathBuf;
/// use std::time::Duration;
/// use media::Recorder;
///
/// let mut digits = leg.handle().digits();
/// let mut recorder = Recorder::start(leg, Duration::from_secs(60));
/// tokio::select! {
///     () = recorder.finished() => {}
///     _digit = digits.next() => {}
/// }
/// let (leg, recording) = recorder.stop().await?;
/// let path = PathBuf::from("/var/spool/switchboard/voicemail.wav");
/// tokio::task::spawn_blocking(move || recording.write_wav(&path))
///     .await
///     .map_err(|_| media::Error::TaskFailed)??;
/// # drop(leg);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Recorder {
    stop: oneshot::Sender<()>,
    task: JoinHandle<(Leg, Recording)>,
    finished: done::Wait,
    max: Duration,
    silent: Arc<Notify>,
}

impl Recorder {
    /// Starts a task recording what the peer sends on `leg`, in its
    /// negotiated codec, until `max` (at most [`MAX_RECORDING`]) of media
    /// has been recorded or it is stopped. Must be called inside a tokio
    /// runtime.
    pub fn start(leg: Leg, max: Duration) -> Recorder {
        Self::start_until_silence(leg, max, None)
    }

    /// [`Recorder::start`], and with `silence`, [`Recorder::silent`] is
    /// told once the peer has sent no voice (nothing louder than about
    /// -36 dBFS, or no audio at all) for that long; a recording stopped
    /// after that keeps only the first 200 ms of the silence.
    pub fn start_until_silence(leg: Leg, max: Duration, silence: Option<Duration>) -> Recorder {
        let max = max.min(MAX_RECORDING);
        let tape = Tape::new(leg.params().codec, max);
        let (raise, finished) = done::flag();
        let (stop, stopped) = oneshot::channel();
        let silent = Arc::new(Notify::new());
        let watch = silence.map(|quiet| (quiet, Arc::clone(&silent)));
        let task = tokio::spawn(run(leg, tape, raise, stopped, watch));
        Recorder {
            stop,
            task,
            finished,
            max,
            silent,
        }
    }

    /// Notified (once, `notify_one`) when the silence given to
    /// [`Recorder::start_until_silence`] has been reached.
    pub fn silent(&self) -> Arc<Notify> {
        Arc::clone(&self.silent)
    }

    /// The maximum length, as capped.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Returns once the recording has reached its maximum length (and
    /// from then on at once). Cancel-safe: poll it in a `select!` loop as
    /// often as needed. Also returns if the task failed;
    /// [`Recorder::stop`] then says so.
    pub async fn finished(&mut self) {
        self.finished.wait().await;
    }

    /// Ends the recording and returns the leg and what was recorded
    /// (including packets still in the jitter buffer).
    ///
    /// # Errors
    /// [`Error::TaskFailed`] when the recorder's task did not end normally.
    pub async fn stop(self) -> Result<(Leg, Recording), Error> {
        // The task may have ended already; then there is no one to tell.
        let _ = self.stop.send(());
        self.task.await.map_err(|_| Error::TaskFailed)
    }
}

async fn run(
    mut leg: Leg,
    mut tape: Tape,
    raise: done::Raise,
    mut stopped: oneshot::Receiver<()>,
    silence: Option<(Duration, Arc<Notify>)>,
) -> (Leg, Recording) {
    let mut buf = buffer();
    let due = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(due);
    let began = Instant::now();
    let mut tick = tokio::time::interval(SILENCE_TICK);
    let mut silent = false;
    if tape.is_full() {
        raise.raise();
    }
    loop {
        let deadline = tape.next_deadline();
        if let Some(at) = deadline {
            due.as_mut().reset(at.into());
        }
        tokio::select! {
            _ = &mut stopped => break,
            rx = leg.recv(&mut buf) => {
                if rx.kind == PayloadKind::Audio
                    && !tape.is_full()
                    && let Some(data) = buf.get(..rx.len)
                    && let Ok(packet) = RtpPacket::parse(data)
                {
                    tape.push(packet.header(), packet.payload(), Instant::now());
                }
            }
            () = &mut due, if deadline.is_some() => {
                tape.play_due(Instant::now());
                if tape.is_full() {
                    raise.raise();
                }
            }
            _ = tick.tick(), if silence.is_some() && !silent => {
                if let Some((quiet, notify)) = &silence
                    && tape.last_voice.unwrap_or(began).elapsed() >= *quiet
                {
                    silent = true;
                    notify.notify_one();
                }
            }
        }
    }
    tape.flush(Instant::now());
    if silent {
        tape.trim_silence();
    }
    (leg, tape.into_recording())
}

/// The recording being made: packets in, samples laid down by timestamp.
/// No IO and no clock (the task passes `now`).
#[derive(Debug)]
struct Tape {
    decoder: Decoder,
    sample_rate: u32,
    /// PCM samples per RTP timestamp unit (1, or 2 for G.722).
    ratio: u32,
    max_gap: u32,
    jitter: JitterBuffer,
    samples: Vec<i16>,
    max_samples: usize,
    /// The timestamp the next packet has if none is lost; `None` at the
    /// start of a stream.
    next_timestamp: Option<u32>,
    /// When the first packet arrived: silence fill keeps the recording
    /// within real time since then (plus [`FILL_SLACK`]).
    started: Option<Instant>,
    pcm: Vec<i16>,
    /// When a frame with voice was last laid down.
    last_voice: Option<Instant>,
    /// The recording's length after that frame, in samples.
    voiced: usize,
}

impl Tape {
    fn new(codec: Codec, max: Duration) -> Tape {
        let sample_rate = codec.sample_rate();
        let max_samples = (max.as_micros() * u128::from(sample_rate) / 1_000_000) as usize;
        Tape {
            decoder: Decoder::new(codec),
            sample_rate,
            ratio: (sample_rate / codec.clock_rate()).max(1),
            max_gap: codec.clock_rate() * MAX_GAP.as_secs() as u32,
            jitter: JitterBuffer::new(codec.clock_rate(), JITTER_DELAY, JITTER_CAPACITY),
            samples: Vec::new(),
            max_samples,
            next_timestamp: None,
            started: None,
            pcm: Vec::new(),
            last_voice: None,
            voiced: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.samples.len() >= self.max_samples
    }

    fn push(&mut self, header: RtpHeader, payload: &[u8], arrival: Instant) {
        self.started.get_or_insert(arrival);
        if self.jitter.push(header, payload, arrival) == PushOutcome::Reset {
            // A new source: what it sends continues the recording.
            self.next_timestamp = None;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.jitter.next_deadline()
    }

    /// Lays down everything due at `now`.
    fn play_due(&mut self, now: Instant) {
        while let Some(playout) = self.jitter.pop(now) {
            self.play(playout, now);
        }
    }

    /// Lays down everything still buffered, at `now` (real time, which
    /// bounds silence fill; the buffer's own deadlines may lie ahead).
    fn flush(&mut self, now: Instant) {
        // Each item is due at its own deadline; every pop takes one out.
        while let Some(due) = self.jitter.next_deadline() {
            while let Some(playout) = self.jitter.pop(due) {
                self.play(playout, now);
            }
        }
    }

    fn play(&mut self, playout: Playout, now: Instant) {
        // Gaps are filled from the next packet's timestamp.
        let Playout::Packet { header, payload } = playout else {
            return;
        };
        if self.is_full() {
            return;
        }
        if let Some(expected) = self.next_timestamp {
            let gap = header.timestamp.wrapping_sub(expected);
            // Forward and not too far: lost packets or suppressed silence.
            // Anything else (a jump back, a restart) just continues.
            if gap > 0 && gap <= self.max_gap {
                let silence = gap as usize * self.ratio as usize;
                let real = self.started.map_or(Duration::ZERO, |t| {
                    now.saturating_duration_since(t) + FILL_SLACK
                });
                let real = (real.as_micros() * u128::from(self.sample_rate) / 1_000_000) as usize;
                let len = (self.samples.len() + silence)
                    .min(self.max_samples)
                    .min(real.max(self.samples.len()));
                self.samples.resize(len, 0);
            }
        }
        self.pcm.clear();
        // An undecodable payload counts as silence of its length.
        if self.decoder.decode(&payload, &mut self.pcm).is_err() {
            self.pcm.clear();
        }
        let room = self.max_samples - self.samples.len().min(self.max_samples);
        let take = self.pcm.len().min(room);
        self.samples.extend_from_slice(&self.pcm[..take]);
        if self.pcm[..take]
            .iter()
            .any(|s| s.unsigned_abs() >= SILENCE_LEVEL)
        {
            self.last_voice = Some(now);
            self.voiced = self.samples.len();
        }
        let units = (self.pcm.len() as u32) / self.ratio;
        self.next_timestamp = Some(header.timestamp.wrapping_add(units));
    }

    /// Cuts the silence after the last voice, but for [`SILENCE_KEPT`].
    fn trim_silence(&mut self) {
        let kept = (SILENCE_KEPT.as_millis() as usize) * self.sample_rate as usize / 1000;
        let end = self.voiced.saturating_add(kept);
        if end < self.samples.len() {
            self.samples.truncate(end);
        }
    }

    fn into_recording(self) -> Recording {
        Recording {
            sample_rate: self.sample_rate,
            samples: self.samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16, ts: u32, ssrc: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc,
        }
    }

    /// µ-law 0x00 decodes to a large negative sample; never zero.
    const LOUD: u8 = 0x00;

    #[test]
    fn packets_are_laid_down_by_timestamp() {
        let mut tape = Tape::new(Codec::Pcmu, Duration::from_secs(1));
        let t0 = Instant::now();
        // 0, 2, 1 (reordered), 5 (3 and 4 lost), then a new source.
        for (seq, ts) in [(0, 1000), (2, 1320), (1, 1160), (5, 1800)] {
            tape.push(header(seq, ts, 7), &[LOUD; 160], t0);
        }
        tape.play_due(t0 + Duration::from_secs(5));
        tape.push(
            header(900, 77, 8),
            &[LOUD; 160],
            t0 + Duration::from_secs(5),
        );
        tape.flush(t0 + Duration::from_secs(5));
        let r = tape.into_recording();
        assert_eq!(r.samples.len(), 7 * 160);
        assert!(r.samples[..480].iter().all(|&s| s != 0));
        assert!(r.samples[480..800].iter().all(|&s| s == 0));
        assert!(r.samples[800..].iter().all(|&s| s != 0));
        assert_eq!(r.duration(), Duration::from_millis(140));
    }

    #[test]
    fn the_recording_stops_at_max() {
        let mut tape = Tape::new(Codec::G722, Duration::from_millis(50));
        let t0 = Instant::now();
        for i in 0..10u16 {
            tape.push(header(i, u32::from(i) * 160, 1), &[0; 160], t0);
        }
        tape.flush(t0);
        assert!(tape.is_full());
        let r = tape.into_recording();
        assert_eq!((r.sample_rate, r.samples.len()), (16_000, 800));
    }

    #[test]
    fn silence_fill_never_runs_ahead_of_real_time() {
        let mut tape = Tape::new(Codec::Pcmu, Duration::from_secs(3600));
        let t0 = Instant::now();
        // Every packet's timestamp jumps 9 s (inside MAX_GAP), 20 ms apart.
        for i in 0..50u16 {
            let at = t0 + Duration::from_millis(20 * u64::from(i));
            tape.push(header(i, u32::from(i) * 72_000, 1), &[LOUD; 160], at);
            tape.play_due(at + JITTER_DELAY);
        }
        tape.flush(t0 + Duration::from_millis(1040));
        let r = tape.into_recording();
        // A second of real time and the slack as silence at most, plus the
        // audio itself (50 packets of 20 ms); not 441 s.
        let most = Duration::from_millis(1040) + FILL_SLACK + Duration::from_millis(50 * 20);
        assert!(r.duration() <= most, "{:?}", r.duration());
        assert!(r.duration() >= FILL_SLACK, "{:?}", r.duration());
    }
}
