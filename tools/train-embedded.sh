#!/usr/bin/env bash
# Rebuilds the embedded model (weights/) from nothing: renders the corpora it was trained on, makes its
# corpus of real training recordings (tools/make-train-recordings.sh: Debian packages' sounds, fetched with
# apt-get download when not installed), and runs its training stages one after another, each starting from
# the one before. One command:
#
#   bash tools/train-embedded.sh [--out DIR] [--work DIR] [--stages N] [--dry-run]
#
#   --out DIR    where the last stage's model goes (default: weights-retrained; `--out weights` replaces
#                the shipped model)
#   --work DIR   corpora, stage models, caches and checkpoints (default: .ardgpu-cache/train-embedded)
#   --stages N   stop after stage N (default: all)
#   --dry-run    print the commands (one per line) instead of running them
#
# Interrupted? Run the same command again: finished corpora and stages are kept, and a stage that was
# cut short resumes from its last checkpoint (train-audiollm.ts --resume). On the 2-core lavapipe
# machine the whole chain takes 6 to 7 hours (stages ~5.2 h, corpora and recordings minutes to ~1.3 h;
# weights/README.md has each stage's wall time). Needs espeak-ng, and for the varied corpus's versions 4–7
# fluidsynth, timgm6mb-soundfont and deepin-sound-theme (tools/setup.sh --with-test-tools installs them), and
# a built dist/.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=weights-retrained
WORK=.ardgpu-cache/train-embedded
LAST=10
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --stages) LAST=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    *) echo "error: train-embedded.sh: unknown option '$1' (see the header of tools/train-embedded.sh)" >&2; exit 2 ;;
  esac
done
case "$LAST" in [1-9]|10) ;; *) echo "error: train-embedded.sh: --stages must be 1 to 10 (got '$LAST')" >&2; exit 2 ;; esac
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

say() { echo "train-embedded: $*" >&2; }
run() { if [ "$DRY" = 1 ]; then echo "$*"; else "$@"; fi; }
[ "$DRY" = 1 ] || [ -f dist/cli/main.js ] || npx tsc -p tsconfig.json

# make-corpus skips clips already rendered (a clip's file name is a hash of its recipe), so a later
# version starts from hard links to the earlier one's clips and renders only what changed.
corpus() { # name, corpus its clips start from ('' for none), make-corpus options...
  local name=$1 from=$2; shift 2
  if [ -f "$WORK/$name/.done" ]; then return; fi
  say "corpus $name"
  if [ -n "$from" ] && [ ! -d "$WORK/$name/clips" ]; then run mkdir -p "$WORK/$name"; run cp -al "$WORK/$from/clips" "$WORK/$name/clips"; fi
  run node bin/ardgpu.mjs make-corpus "$@" --out "$WORK/$name"
  run touch "$WORK/$name/.done"
}

recordings() { # name, make-train-recordings.sh options...
  local name=$1; shift
  if [ -f "$WORK/$name/.done" ]; then return; fi
  say "recordings $name"
  run bash tools/make-train-recordings.sh --out "$WORK/$name" "$@"
  run touch "$WORK/$name/.done"
}

merge() { # name, name=corpus ...
  local name=$1; shift
  local args=()
  for s in "$@"; do args+=("${s%%=*}=$WORK/${s#*=}"); done
  run npx tsx tools/merge-corpora.ts --out "$WORK/$name" "${args[@]}"
}

COMMON=(--aux-weight 20 --aux-lr-scale 10)
MIX=(--mix-rate 0.45 --mix-third 0.3 --mix-corpus-levels)
stage() { # number, corpus, init ('' for none), train-audiollm options...
  local n=$1 corpus=$2 init=$3; shift 3
  [ "$n" -le "$LAST" ] || return 0
  local out="$WORK/stage$n"
  [ "$n" -eq "$LAST" ] && out=$OUT
  if [ -f "$out/model.safetensors" ] && [ -f "$WORK/stage$n.done" ]; then say "stage $n: done ($out)"; return; fi
  local resume=()
  [ -f "$WORK/work$n/checkpoint.safetensors" ] && resume=(--resume)
  say "stage $n → $out"
  run npx tsx tools/train-audiollm.ts --corpus "$WORK/$corpus" ${init:+--init "$init"} --out "$out" --work "$WORK/work$n" "$@" "${resume[@]}"
  run touch "$WORK/stage$n.done"
}

corpus default '' --seed 0 --size 3000
corpus varied1 '' --variety 1 --seed 0 --size 4000
corpus varied2 varied1 --variety 2 --seed 0 --size 4000
corpus varied3 varied2 --variety 3 --seed 0 --size 4000
merge mix5 default=default varied=varied2
merge mix7 default=default default2=default varied=varied3
corpus varied4 varied3 --variety 4 --seed 0 --size 4000
corpus varied5 varied4 --variety 5 --seed 0 --size 4000
corpus varied6 varied5 --variety 6 --seed 0 --size 4000
corpus varied7 varied6 --variety 7 --seed 0 --size 4000
recordings rec
merge mix9 default=default default2=default varied=varied7 varied2=varied7 rec=rec rec2=rec

S() { echo "$WORK/stage$1"; }
stage 1 default '' --steps 2500 --seed 0 "${COMMON[@]}" --mix-rate 0.35 --question-weights gender=5,sounds=4
stage 2 default "$(S 1)" --steps 1050 --seed 1 --lr 1e-3 "${COMMON[@]}" "${MIX[@]}" --question-weights gender=5,sounds=4
stage 3 varied1 "$(S 2)" --steps 600 --seed 2 --lr 5e-4 --warmup 30 "${COMMON[@]}" "${MIX[@]}" --question-weights gender=5,sounds=4,speaking=2
stage 4 varied2 "$(S 3)" --steps 900 --seed 3 --lr 5e-4 --warmup 30 "${COMMON[@]}" "${MIX[@]}" --question-weights gender=5,sounds=4,speaking=3
stage 5 mix5 "$(S 4)" --steps 500 --seed 4 --lr 3e-4 --warmup 20 "${COMMON[@]}" "${MIX[@]}" --question-weights gender=5,sounds=4,speaking=3 --eval-max 200
stage 6 default "$(S 5)" --steps 250 --seed 5 --lr 2e-4 --warmup 10 "${COMMON[@]}" "${MIX[@]}" --question-weights gender=5,sounds=4,speaking=3 --eval-max 100
stage 7 mix7 "$(S 6)" --steps 700 --seed 6 --lr 3e-4 --warmup 20 "${COMMON[@]}" "${MIX[@]}" --question-weights gender=5,sounds=4,speaking=3 --average-from 450 --average-every 5 --eval-max 200
stage 8 mix7 "$(S 7)" --steps 500 --seed 7 --lr 2e-4 --warmup 20 "${COMMON[@]}" "${MIX[@]}" --question-weights gender=5,sounds=4,speaking=8 --average-from 300 --average-every 5 --eval-max 200
# stages 9 and 10: reshaped formant envelopes and voices warped towards the other gender (version 7) and the
# real training recordings; the whole model trains (weights/README.md, "Stages 9 and 10")
stage 9 mix9 "$(S 8)" --steps 500 --seed 22 --lr 2e-4 --warmup 20 "${COMMON[@]}" "${MIX[@]}" --question-weights gender=8,sounds=4,speaking=8 --average-from 300 --average-every 5 --eval-max 200
stage 10 mix9 "$(S 9)" --steps 1500 --seed 23 --lr 2e-4 --warmup 20 "${COMMON[@]}" "${MIX[@]}" --question-weights gender=8,sounds=4,speaking=8 --average-from 1000 --average-every 5 --eval-max 200
say "done: $OUT"
