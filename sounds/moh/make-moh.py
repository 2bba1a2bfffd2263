#!/usr/bin/env python3
"""Writes sounds/moh/default.wav: Switchboard's default music on hold.

A 40-second piece composed here (so it is ours to ship, royalty-free):
a I-vi-IV-V progression in C major at 96 beats per minute, an arpeggio of
soft mallet-like notes over a bass line, the second half with the melody an
octave higher. It loops cleanly: the last bar resolves back to the first.
8 kHz, 16-bit, mono, as media::Prompt::load takes (what a phone hears on
PCMU/PCMA anyway).

Needs only Python 3. Usage: sounds/moh/make-moh.py  (writes next to itself)
"""

import math
import os
import struct
import wave

RATE = 8000
BPM = 96
BEAT = 60.0 / BPM  # seconds per beat
BAR = 4 * BEAT


def midi_hz(note):
    return 440.0 * 2 ** ((note - 69) / 12.0)


# Chords as MIDI notes (root position, C4 = 60): C, Am, F, G, twice each
# half, with a Dm-G turnaround in the last two bars of the second half.
FIRST = [[60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62]]
SECOND = [[60, 64, 67], [57, 60, 64], [62, 65, 69], [55, 59, 62]]
PROGRESSION = FIRST + FIRST + SECOND + SECOND
# Which chord tone each eighth note of a bar plays (0-2, 3 = octave up).
PATTERN = [0, 1, 2, 3, 2, 1, 2, 1]


def mallet(freq, length, gain):
    """A struck note: a few harmonics, fast attack, exponential decay."""
    n = int(length * RATE)
    out = [0.0] * n
    partials = [(1.0, 1.0), (2.0, 0.35), (3.0, 0.12), (4.0, 0.05)]
    for i in range(n):
        t = i / RATE
        env = min(1.0, t / 0.01) * math.exp(-3.2 * t)
        s = 0.0
        for mult, amp in partials:
            f = freq * mult
            if f < RATE / 2 - 200:
                s += amp * math.sin(2 * math.pi * f * t)
        out[i] = gain * env * s
    return out


def render():
    total = int(len(PROGRESSION) * BAR * RATE)
    mix = [0.0] * total
    for bar, chord in enumerate(PROGRESSION):
        start = bar * BAR
        second_half = bar >= len(PROGRESSION) // 2
        # Bass: the root two octaves down, on beats 1 and 3.
        for beat in (0, 2):
            note = mallet(midi_hz(chord[0] - 24), 2 * BEAT, 0.5)
            at = int((start + beat * BEAT) * RATE)
            for i, v in enumerate(note):
                if at + i < total:
                    mix[at + i] += v
        # Arpeggio in eighth notes.
        for step, tone in enumerate(PATTERN):
            note_num = chord[tone % 3] + (12 if tone == 3 else 0)
            if second_half:
                note_num += 12
            note = mallet(midi_hz(note_num), 1.2, 0.28)
            at = int((start + step * BEAT / 2) * RATE)
            for i, v in enumerate(note):
                # Wrap the tail of the last notes round to the start, so the
                # loop has no click or gap.
                mix[(at + i) % total] += v
    peak = max(abs(v) for v in mix) or 1.0
    scale = 0.5 * 32767 / peak  # about -6 dBFS peak
    return [int(v * scale) for v in mix]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "default.wav")
    samples = render()
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(struct.pack("<%dh" % len(samples), *samples))
    print("wrote %s (%.1f s)" % (path, len(samples) / RATE))


if __name__ == "__main__":
    main()
