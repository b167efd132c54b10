#!/usr/bin/env bash
# A labelled corpus of real recordings that Debian packages ship: spoken telephone prompts in five
# languages (Asterisk), CMU Sphinx test recordings and a LibriVox reading (pocketsphinx-testdata),
# ALSA's spoken channel names, desktop notification sounds, sound icons and music on hold.
# Writes DIR/labels.csv and the clips (WAV, FLAC, Ogg Vorbis, Ogg Opus and MP3; see tools/real-corpus.ts
# and the README section "A real corpus from Debian packages"), and DIR/packages.txt with the versions used.
#
#   bash tools/make-real-corpus.sh [--out DIR] [--packages "P1 P2 ..."] [--per-source N] [--formats mixed|wav]
#                                  [--seed S] [--cache DIR] [--no-apt]
#
# A source package already installed is read where it is; any other is fetched with `apt-get download`
# and unpacked (dpkg-deb -x) into the cache folder, so nothing is installed for the sources and no
# root is needed for them. The encoders (sox, opus-tools, lame) are installed with apt-get when
# missing, unless --no-apt. The same packages and options give the same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
ALL_PACKAGES="asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav
  asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav asterisk-prompt-fr-armelle asterisk-prompt-es-co
  asterisk-moh-opsound-wav pocketsphinx-testdata alsa-utils sound-theme-freedesktop yaru-theme-sound oxygen-sounds sound-icons"
OUT=real-corpus; PACKAGES="$ALL_PACKAGES"; PER_SOURCE=""; FORMATS=mixed; SEED=0; APT=1
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ardgpu/debian-sounds"
MARK="# Debian packages this corpus was made from (tools/make-real-corpus.sh)"
die() { echo "make-real-corpus: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --packages) PACKAGES="$2"; shift 2 ;;
    --per-source) PER_SOURCE="$2"; shift 2 ;;
    --formats) FORMATS="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --cache) CACHE="$2"; shift 2 ;;
    --no-apt) APT=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
. tools/debian-packages.sh
check_packages "$ALL_PACKAGES" "$PACKAGES"

# encoders
missing=""
command -v sox >/dev/null || missing="$missing sox"
command -v opusenc >/dev/null || missing="$missing opus-tools"
command -v lame >/dev/null || missing="$missing lame"
if [ -n "$missing" ]; then
  [ "$APT" = 1 ] && command -v apt-get >/dev/null || die "missing:$missing (install them, e.g. apt-get install$missing)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "make-real-corpus: installing$missing" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null || die "apt-get install$missing failed (try apt-get update first)"
fi

# sources: installed, or downloaded and unpacked into the cache
debian_package_roots "$CACHE" $PACKAGES
fresh_corpus_dir "$OUT" "$MARK"
EXTRA=(); [ -n "$PER_SOURCE" ] && EXTRA+=(--per-source "$PER_SOURCE")
npx --no-install tsx tools/real-corpus.ts --out "$OUT" --formats "$FORMATS" --seed "$SEED" "${EXTRA[@]}" "${ROOT_ARGS[@]}"
{
  echo "$MARK"
  printf '%s' "$VERSIONS"
  echo "# encoders: $(sox --version 2>&1 | head -n 1 | sed 's/^.*: *//'); $(opusenc --version | head -n 1); $(lame --version | head -n 1)"
  echo "# options: --formats $FORMATS --seed $SEED${PER_SOURCE:+ --per-source $PER_SOURCE}"
} > "$OUT/packages.txt"
