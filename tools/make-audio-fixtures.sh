#!/usr/bin/env bash
# Writes the compressed-audio fixtures in test/fixtures/audio/ (committed, so tests and CI need none
# of these tools): a chirp (mono, and stereo with a different tone on the right) and a short
# espeak-ng utterance, as 16-bit WAV, FLAC (flac), Ogg Vorbis (sox), Ogg Opus (opusenc) and MP3
# (lame), at 8, 22.05, 44.1 and 48 kHz. FLAC is lossless, so each FLAC decodes to its WAV exactly;
# WAV sources are kept only where small (the FLAC stands in for the others in the lossy tests).
#
#   apt-get install -y sox espeak-ng flac lame opus-tools
#   bash tools/make-audio-fixtures.sh [outDir]
#
# Encoders are deterministic for fixed inputs and options, but their versions differ between
# machines: the tests compare against the committed files, never against a fresh run.
set -euo pipefail
out=${1:-test/fixtures/audio}
for t in sox espeak-ng flac lame opusenc; do
  command -v "$t" >/dev/null || { echo "make-audio-fixtures: $t not found (apt-get install -y sox espeak-ng flac lame opus-tools)" >&2; exit 1; }
done
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# name rate channels source-command...
render() {
  local name=$1 rate=$2 ch=$3
  shift 3
  "$@" "$tmp/$name.wav"
  # flac: --no-padding keeps files small; -8 is deterministic.
  flac --silent --force -8 --no-padding -o "$out/$name.flac" "$tmp/$name.wav"
  sox "$tmp/$name.wav" -C 2 "$out/$name.ogg"
  # opusenc: Ogg Opus always decodes at 48 kHz; the input rate is recorded in the header only.
  opusenc --quiet --bitrate $((ch * 32)) "$tmp/$name.wav" "$out/$name.opus"
  # lame: constant bitrate, with the LAME/Info tag that carries the frame count and the encoder delay
  # (gapless decoding needs it; at 22.05 kHz, 48 kbit/s frames are too small for lame to write it).
  local kbps=$((rate <= 8000 ? 24 : rate <= 24000 ? 56 : 64 * ch))
  lame --quiet -b "$kbps" --cbr "$tmp/$name.wav" "$out/$name.mp3"
}

chirp_mono() { # rate out
  sox -n -r "$1" -c 1 -b 16 "$2" synth 0.3 sine 200:3000 gain -6 fade 0.01 0.3 0.01
}
chirp_stereo() { # rate out: left a rising chirp, right a steady 440 Hz tone
  sox -n -r "$1" -c 2 -b 16 "$2" synth 0.3 sine 200:3000 sine 440 gain -6 fade 0.01 0.3 0.01
}
speech() { # rate out
  espeak-ng -v en -s 170 -w "$tmp/speech-raw.wav" "compressed audio"
  sox "$tmp/speech-raw.wav" -r "$1" -c 1 -b 16 "$2" trim 0 0.6 gain -n -3
}

for r in 8000 22050 44100 48000; do
  render "chirp-mono-$r" "$r" 1 chirp_mono "$r"
done
for r in 8000 44100 48000; do
  render "chirp-stereo-$r" "$r" 2 chirp_stereo "$r"
done
render speech-mono-22050 22050 1 speech 22050

# WAV sources kept where they are small: the reference for FLAC's exactness.
for n in chirp-mono-8000 chirp-mono-22050 chirp-stereo-8000 speech-mono-22050; do
  cp "$tmp/$n.wav" "$out/$n.wav"
done
# A FLAC whose last frame is short and silent (8,192 samples of tone, then 1,703 of silence, blocks of
# 4,096): @wasm-audio-decoders/flac 0.2 drops such a frame at the very end of its input (ardgpu pads
# the input by one byte, src/audio/decode.ts); its WAV is the reference.
sox -r 16000 -c 1 -n -b 16 "$tmp/short-last-frame.wav" synth 8192s sine 440 gain -12 pad 0 1703s
flac --silent --force -8 --no-padding --blocksize=4096 -o "$out/short-last-frame.flac" "$tmp/short-last-frame.wav"
cp "$tmp/short-last-frame.wav" "$out/short-last-frame.wav"
# A FLAC saved under another extension, and an MP3 with an ID3v2 tag: found by content, not name.
cp "$out/chirp-mono-22050.flac" "$out/flac-named.wav"
lame --quiet -b 56 --cbr --tt "fixture" --add-id3v2 "$tmp/chirp-mono-22050.wav" "$out/id3-chirp-22050.mp3"
ls -l "$out"
du -cb "$out"/* | tail -1
