# Sourced by the corpus scripts (make-real-corpus.sh, make-train-recordings.sh): finds each Debian
# package's files without installing it. A package already installed is read where it is; any other
# is fetched with `apt-get download` and unpacked (dpkg-deb -x) into the cache folder, once per .deb,
# so no root is needed for the sources.
#
#   debian_package_roots CACHE P1 P2 ...   sets ROOT_ARGS (--root P=DIR ...) and VERSIONS (a line each)
#   fresh_corpus_dir OUT MARK              empties OUT for a rebuild, refusing a folder the script did not make
#   check_packages "ALL" "CHOSEN"          refuses a --packages entry that is not among ALL
#   (the caller defines die)
debian_package_roots() {
  local cache=$1; shift
  mkdir -p "$cache"
  ROOT_ARGS=(); VERSIONS=""
  local p deb
  for p in "$@"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      ROOT_ARGS+=(--root "$p=/")
      VERSIONS+="$p $(dpkg-query -W -f='${Version}' "$p") (installed)"$'\n'
      continue
    fi
    deb=$(ls "$cache"/"${p}"_*.deb 2>/dev/null | head -n 1 || true)
    if [ -z "$deb" ]; then
      command -v apt-get >/dev/null || die "$p is not installed and apt-get is not there to fetch it"
      echo "$(basename "$0" .sh): downloading $p" >&2
      (cd "$cache" && apt-get download -qq "$p" >/dev/null 2>&1) || die "apt-get download $p failed (run apt-get update first, or install $p)"
      deb=$(ls "$cache"/"${p}"_*.deb | head -n 1)
    fi
    # unpacked once per .deb: the stamp names the .deb the folder came from
    if [ "$(cat "$cache/$p.unpacked" 2>/dev/null)" != "$(basename "$deb")" ] || [ ! -d "$cache/$p" ]; then
      rm -rf "$cache/$p.part"; mkdir -p "$cache/$p.part"
      dpkg-deb -x "$deb" "$cache/$p.part" && rm -rf "$cache/$p" && mv "$cache/$p.part" "$cache/$p"
      basename "$deb" > "$cache/$p.unpacked"
    fi
    ROOT_ARGS+=(--root "$p=$cache/$p")
    VERSIONS+="$p $(dpkg-deb -f "$deb" Version) (from $(basename "$deb"))"$'\n'
  done
}

# A rebuild starts from an empty folder, so no clip of an earlier build is left behind. OUT/packages.txt
# starts with MARK at once, so that a build that dies half-way can be rebuilt in place.
fresh_corpus_dir() {
  local out=$1 mark=$2
  if [ -e "$out" ]; then
    [ -z "$(ls -A "$out")" ] || [ "$(head -n 1 "$out/packages.txt" 2>/dev/null)" = "$mark" ] ||
      die "$out exists and is not a corpus this script made (no packages.txt of its own): choose another --out"
    rm -rf "$out"
  fi
  mkdir -p "$out"
  echo "$mark" > "$out/packages.txt"
}

check_packages() {
  local all p
  all=$(echo $1)
  for p in $2; do
    case " $all " in *" $p "*) ;; *) die "--packages: $p is not one of: $all" ;; esac
  done
}
