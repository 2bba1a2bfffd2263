//! `Prompt::load` on real files: every shipped prompt in `sounds/` loads,
//! and each kind of bad WAV file gets its own typed error naming the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use media::{Error, Prompt, Recording, WavError};

fn sounds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sounds")
}

#[test]
fn every_shipped_sound_loads() {
    let mut names: Vec<String> = std::fs::read_dir(sounds())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .map(|p| {
            let prompt = Prompt::load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(prompt.sample_rate(), 8000, "{}", p.display());
            assert!(
                prompt.duration() > Duration::from_millis(200),
                "{}",
                p.display()
            );
            assert!(
                prompt.duration() < Duration::from_secs(8),
                "{}",
                p.display()
            );
            assert!(prompt.samples().iter().any(|&s| s.unsigned_abs() > 3000));
            p.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    names.sort();
    // The ones the dialplans name.
    for name in [
        "hello",
        "you-entered",
        "goodbye",
        "echo",
        "no-input",
        "digit-star",
        "digit-pound",
    ]
    .iter()
    .map(|n| n.to_string())
    .chain((0..10).map(|d| format!("digit-{d}")))
    {
        assert!(names.contains(&format!("{name}.wav")), "missing {name}.wav");
    }
}

fn write(dir: &Path, name: &str, spec: hound::WavSpec, samples: usize) -> PathBuf {
    let path = dir.join(name);
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..samples * usize::from(spec.channels) {
        match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, _) => w.write_sample(0.25f32).unwrap(),
            (_, 8) => w.write_sample((i % 50) as i8).unwrap(),
            _ => w.write_sample((i % 5000) as i16).unwrap(),
        }
    }
    w.finalize().unwrap();
    path
}

fn spec(channels: u16, rate: u32, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: format,
    }
}

fn problem(path: &Path) -> WavError {
    match Prompt::load(path) {
        Err(Error::Wav { path: p, problem }) => {
            assert_eq!(p, path);
            problem
        }
        other => panic!("{}: {other:?}", path.display()),
    }
}

#[test]
fn bad_wav_files_give_typed_errors() {
    use hound::SampleFormat::{Float, Int};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let missing = d.join("nope.wav");
    let err = Prompt::load(&missing).unwrap_err();
    assert!(err.to_string().contains("nope.wav"), "{err}");
    assert!(matches!(problem(&missing), WavError::NotFound));

    let text = d.join("text.wav");
    std::fs::write(&text, "this is not a WAV file at all").unwrap();
    assert!(matches!(problem(&text), WavError::NotWav));

    let stereo = write(d, "stereo.wav", spec(2, 8000, 16, Int), 100);
    assert!(matches!(problem(&stereo), WavError::Channels(2)));
    let bits8 = write(d, "8bit.wav", spec(1, 8000, 8, Int), 100);
    assert!(matches!(problem(&bits8), WavError::Bits(8)));
    let float = write(d, "float.wav", spec(1, 8000, 32, Float), 100);
    assert!(matches!(problem(&float), WavError::Float));
    let cd = write(d, "cd.wav", spec(1, 44_100, 16, Int), 100);
    assert!(matches!(problem(&cd), WavError::Rate(44_100)));
    let msg = Prompt::load(&cd).unwrap_err().to_string();
    assert!(msg.contains("cd.wav") && msg.contains("44100"), "{msg}");

    // Cut the last 50 samples off a good file.
    let good = write(d, "good.wav", spec(1, 16_000, 16, Int), 1600);
    let prompt = Prompt::load(&good).unwrap();
    assert_eq!(prompt.duration(), Duration::from_millis(100));
    assert_eq!(prompt.samples()[4999 % 1600], 4999 % 1600);
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.truncate(bytes.len() - 100);
    let cut = d.join("cut.wav");
    std::fs::write(&cut, &bytes).unwrap();
    assert!(matches!(
        problem(&cut),
        WavError::Truncated {
            expected: 1600,
            found: 1550
        }
    ));

    // A data chunk announcing 11 minutes is refused before it is read.
    let mut bytes = std::fs::read(&good).unwrap();
    let at = bytes.windows(4).position(|w| w == b"data").unwrap() + 4;
    let eleven_minutes = 16_000u32 * 2 * 660;
    bytes[at..at + 4].copy_from_slice(&eleven_minutes.to_le_bytes());
    let long = d.join("long.wav");
    std::fs::write(&long, &bytes).unwrap();
    assert!(matches!(problem(&long), WavError::TooLong(t) if t == Duration::from_secs(660)));

    // A huge file is refused before it is read (sparse: nothing written).
    let huge = d.join("huge.wav");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(64 << 20).unwrap();
    assert!(matches!(problem(&huge), WavError::TooLarge(n) if n == 64 << 20));
}

#[test]
fn a_recording_written_loads_as_a_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.wav");
    let samples: Vec<i16> = (0..1234).map(|i| (i * 7 % 3000) as i16 - 1500).collect();
    let rec = Recording {
        sample_rate: 16_000,
        samples: samples.clone(),
    };
    rec.write_wav(&path).unwrap();
    let prompt = Prompt::load(&path).unwrap();
    assert_eq!(prompt.sample_rate(), 16_000);
    assert_eq!(prompt.samples(), &samples[..]);
    assert_eq!(prompt.duration(), rec.duration());

    let err = rec
        .write_wav(&dir.path().join("no/such/dir.wav"))
        .unwrap_err();
    assert!(matches!(err, Error::WriteWav { .. }), "{err:?}");
}
