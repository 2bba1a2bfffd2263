#!/usr/bin/env bash
# Generates the prompts the dialplans use: espeak-ng speaks each text,
# sox turns it into 8 kHz, 16-bit, mono WAV (what media::Prompt::load
# takes; played as-is on PCMU/PCMA legs, upsampled for G.722).
#
# Needs: apt-get install -y espeak-ng sox
# Usage: sounds/make-sounds.sh   (writes next to this script)
set -euo pipefail

cd "$(dirname "$0")"

for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || {
        echo "make-sounds.sh: $tool is missing (apt-get install -y espeak-ng sox)" >&2
        exit 1
    }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# say NAME TEXT: sounds/NAME.wav speaking TEXT.
say() {
    local name=$1 text=$2
    # US English voice, a little slower than the default 175 words/min.
    espeak-ng -v en-us -s 150 -w "$tmp/$name.wav" "$text"
    # 8 kHz mono 16-bit; trim leading/trailing silence, then add 100 ms
    # at each end so consecutive prompts do not run together; normalize
    # to -3 dBFS so all prompts are equally loud.
    sox "$tmp/$name.wav" -r 8000 -c 1 -b 16 -e signed-integer "$name.wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse \
        pad 0.1 0.1 norm -3
}

say hello "Hello. Please enter up to four digits, then press the pound key."
say you-entered "You entered"
digits=(zero one two three four five six seven eight nine)
for d in "${!digits[@]}"; do
    say "digit-$d" "${digits[$d]}"
done
say digit-star "star"
say digit-pound "pound"
say goodbye "Goodbye."
say echo "Echo test. Speak, and you will hear yourself."
say no-input "No digits received."

ls -l ./*.wav
