#!/usr/bin/env bash
# A training corpus of real recordings from Debian packages that the real check set
# (tools/make-real-corpus.sh) never uses: game sound effects, city ambiences, game music, chat and
# phone programs' notification sounds and ringtones (non-speech), and KLettres' recorded letters and
# syllables in some 25 languages (very short real speech). Clips are 16 kHz WAV of at most 4 s,
# marked `labelled: false` in DIR/manifest.jsonl: training asks them only "Is anyone speaking?". See
# tools/train-recordings.ts for how clips are cut, and weights/README.md for what training on them did.
#
#   bash tools/make-train-recordings.sh [--out DIR] [--packages "P1 P2 ..."] [--seed S] [--per-language N]
#                                       [--renderings N] [--cache DIR]
#
# Packages not installed are fetched with `apt-get download` into the cache and unpacked there
# (tools/debian-packages.sh); nothing is installed. Needs sox and opusdec (opus-tools). The same
# packages and options give the same bytes. DIR/packages.txt records the package versions.
set -euo pipefail
cd "$(dirname "$0")/.."
ALL_PACKAGES=$(npx --no-install tsx tools/train-recordings.ts --list-packages)   # the sources' table is there
PACKAGES="$ALL_PACKAGES"; OUT=train-recordings; SEED=0; PER_LANGUAGE=30; RENDERINGS=2
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ardgpu/debian-sounds"
MARK="# Debian packages this corpus was made from (tools/make-train-recordings.sh)"
die() { echo "make-train-recordings: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --packages) PACKAGES="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --per-language) PER_LANGUAGE="$2"; shift 2 ;;
    --renderings) RENDERINGS="$2"; shift 2 ;;
    --cache) CACHE="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
. tools/debian-packages.sh
check_packages "$ALL_PACKAGES" "$PACKAGES"
for tool in sox soxi opusdec; do command -v $tool >/dev/null || die "$tool is missing (apt-get install sox opus-tools)"; done
debian_package_roots "$CACHE" $PACKAGES
fresh_corpus_dir "$OUT" "$MARK"
npx --no-install tsx tools/train-recordings.ts --out "$OUT" --packages "$PACKAGES" --seed "$SEED" --per-language "$PER_LANGUAGE" --renderings "$RENDERINGS" "${ROOT_ARGS[@]}"
{
  echo "$MARK"
  printf '%s' "$VERSIONS"
  echo "# decoders: $(sox --version 2>&1 | head -n 1 | sed 's/^.*: *//'); $(opusdec --version 2>&1 | head -n 1)"
  opts="--seed $SEED --per-language $PER_LANGUAGE --renderings $RENDERINGS"
  [ "$(echo $PACKAGES)" = "$(echo $ALL_PACKAGES)" ] || opts+=" --packages \"$(echo $PACKAGES)\""
  echo "# options: $opts"
} > "$OUT/packages.txt"
