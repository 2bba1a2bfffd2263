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

# Voicemail (plugins/voicemail.lua).
say vm-person-at "The person at extension"
say vm-unavailable "is not available. Please leave a message after the tone, and press pound when you are done."
say vm-busy "is on the phone. Please leave a message after the tone, and press pound when you are done."
say vm-mailbox "Please enter the mailbox number, then press pound."
say vm-password "Please enter your password, then press pound."
say vm-incorrect "Incorrect password."
say vm-you-have "You have"
say vm-new "new"
say vm-old "old"
say vm-messages "messages."
say vm-main-menu "Press 1 to listen to your messages, 0 for mailbox options, or star to hang up."
say vm-message "Message"
say vm-message-menu "5 repeat, 4 back, 6 next, 7 delete, 9 save, 3 call back, star menu."
say vm-no-more "No more messages."
say vm-deleted "Message deleted."
say vm-saved "Message saved."
say vm-options "Press 1 to record your unavailable greeting, 2 for your busy greeting, 3 for your name, or star for the main menu."
say vm-record-after "Record after the tone, then press pound."
say vm-recorded "Recorded. Here is what you recorded."
say vm-too-short "That was too short, nothing was recorded."
say vm-invalid "That key is not valid."

# Parking (dialplans/default.lua: 70 parks, 71-79 pick up).
say park-parked-in "Parked in slot"
say park-empty "Nobody is parked there."

# Call queues (plugins/queue.lua: 401 queues, *45 logs an agent in or out).
say queue-position "You are caller number"
say queue-wait "Your estimated wait is about"
say queue-minutes "minutes."
say queue-agent-login "Agent logged in."
say queue-agent-logout "Agent logged out."
say queue-not-agent "You are not an agent of any queue."
# Office plugins (plugins/ivr.lua, dnd.lua, timeconditions.lua, followme.lua;
# dialplans/default.lua's reception on 0).
say reception-menu "Welcome. Press 1 for sales, 2 for support, 0 for the operator, or dial an extension."
say reception-closed "We are closed. Press 1 for sales, 2 for support, 0 for the operator, or dial an extension."
say ivr-invalid "That is not a valid choice."
say dnd-on "Do not disturb is on."
say dnd-off "Do not disturb is off."
say night-on "Night mode is on. The office is closed."
say night-off "Night mode is off."
say followme-accept "You have a call. Press 1 to accept it."

# The tone before a recording: 1 kHz for 400 ms, 8 kHz mono 16-bit.
sox -n -r 8000 -c 1 -b 16 -e signed-integer vm-beep.wav synth 0.4 sine 1000 vol 0.5

ls -l ./*.wav
