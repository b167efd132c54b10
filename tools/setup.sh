#!/usr/bin/env bash
# Makes a fresh Debian/Ubuntu machine able to run ardgpu:
#   npm packages; when no real WebGPU adapter is found, libvulkan1 + Mesa lavapipe >= 24
#   (bookworm-backports on Debian 12); espeak-ng + sox for the probe corpus.
# Then checks that a real adapter (never Dawn's null backend) appears.
# Flags: --no-apt (never touch system packages), --with-test-tools (chromium, for the report test;
#        opus-tools, lame and the Debian sound packages test/real-corpus.test.ts builds its corpus from;
#        fluidsynth, timgm6mb-soundfont and deepin-sound-theme for make-corpus --variety 4;
#        psi-plus-sounds and eiskaltdcpp-sounds for test/train-recordings.test.ts),
#        --with-reference (python3-torch + numpy + OpenBLAS: regenerate fixtures, PyTorch baselines).
set -euo pipefail
cd "$(dirname "$0")/.."
APT=1; TEST_TOOLS=0; REFERENCE=0
for a in "$@"; do
  case "$a" in
    --no-apt) APT=0 ;;
    --with-test-tools) TEST_TOOLS=1 ;;
    --with-reference) REFERENCE=1 ;;
    *) echo "setup: unknown flag $a" >&2; exit 2 ;;
  esac
done
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/ardgpu-xdg}"; mkdir -p "$XDG_RUNTIME_DIR"
say() { echo "setup: $*"; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

need_node() {
  command -v node >/dev/null || { say "Node.js >= 20 is missing: install it (e.g. apt-get install nodejs npm, or nodesource)"; exit 1; }
  local major; major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || { say "Node.js $major found, ardgpu needs >= 20"; exit 1; }
}

apt_install_base() {
  [ "$APT" = 1 ] || return 0
  command -v apt-get >/dev/null || { say "not a Debian/Ubuntu system: install a Vulkan driver (Mesa lavapipe >= 24 or a GPU driver), libvulkan1, espeak-ng and sox yourself"; return 0; }
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libvulkan1 espeak-ng sox >/dev/null
  if [ "$TEST_TOOLS" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    # tools/make-real-corpus.sh: its encoders, and the recordings the end-to-end test uses
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq opus-tools lame \
      asterisk-core-sounds-en-wav asterisk-core-sounds-it-wav pocketsphinx-testdata alsa-utils sound-theme-freedesktop >/dev/null
    # make-corpus --variety 4: sampled instruments played by FluidSynth, desktop sounds (not the 148 MB FluidR3 it recommends)
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends fluidsynth timgm6mb-soundfont deepin-sound-theme >/dev/null
    # tools/make-train-recordings.sh: two of its small sound packages, which its test builds from
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends psi-plus-sounds eiskaltdcpp-sounds >/dev/null
  fi
  if [ "$REFERENCE" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-torch python3-numpy libopenblas0-pthread >/dev/null
  fi
}

mesa_version() { # prints installed mesa-vulkan-drivers major version, or 0
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/' || echo 0
}

install_lavapipe() {
  [ "$APT" = 1 ] || { say "no WebGPU adapter and --no-apt given: install libvulkan1 and mesa-vulkan-drivers >= 24"; exit 1; }
  command -v apt-get >/dev/null || { say "no WebGPU adapter: install a Vulkan driver (Mesa lavapipe >= 24) and libvulkan1"; exit 1; }
  . /etc/os-release
  if [ "${VERSION_CODENAME:-}" = bookworm ]; then
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      say "adding bookworm-backports (Debian 12's Mesa 22 is too old for Dawn)"
      echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/ardgpu-backports.list >/dev/null
      $SUDO apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers >/dev/null
  else
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers >/dev/null
  fi
  local v; v=$(mesa_version)
  [ "${v:-0}" -ge 24 ] || { say "mesa-vulkan-drivers $v installed; Dawn needs >= 24 (on Ubuntu use a release with Mesa 24+, or the kisak/oibaf PPA)"; exit 1; }
}

need_node
apt_install_base
if [ ! -d node_modules/webgpu ] || [ package.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi
fi
if ! node tools/probe-adapter.mjs >/dev/null 2>&1; then
  say "no real WebGPU adapter found: installing Mesa lavapipe"
  install_lavapipe
fi
if ! out=$(node tools/probe-adapter.mjs 2>&1); then
  say "still no real WebGPU adapter after installing Mesa: $out"
  exit 1
fi
say "adapter: $(echo "$out" | grep -v '^Warning' | tail -n 1)"
say "building (tsc → dist/)"
npm run --silent build
