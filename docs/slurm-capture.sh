#!/usr/bin/env bash
# Capture a corpus on a SLURM cluster as a job array: each array task captures one part of the clips
# into the same run folder on shared storage, then one dependent job merges the parts.
#
#   sbatch docs/slurm-capture.sh                  # submits the array; the merge job is submitted by task 0
#
# Every task computes the same clip list from the same corpus and options and takes its own contiguous
# block (ardgpu capture --shards N reads SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and checks
# SLURM_ARRAY_TASK_COUNT). A task that fails or is preempted resumes where it stopped when run again
# (sbatch --array=I docs/slurm-capture.sh); finished parts are kept.
#SBATCH --job-name=ardgpu-capture
#SBATCH --array=0-7
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --output=ardgpu-capture-%A_%a.log
set -euo pipefail

# Edit these. RUN and CORPUS must be on storage every node sees.
CORPUS=${CORPUS:-/shared/corpora/my-corpus}
LABELS=${LABELS:-$CORPUS/labels.csv}
RUN=${RUN:-/shared/runs/my-corpus}
MODEL=${MODEL:-/shared/models/Qwen2-Audio-7B-Instruct}
LAYERS=${LAYERS:-16}
# the array's size; keep it equal to --array above (the capture checks SLURM_ARRAY_TASK_COUNT)
SHARDS=${SHARDS:-8}

ardgpu capture --labels "$LABELS" --layers "$LAYERS" --model "$MODEL" --run "$RUN" --shards "$SHARDS"

# The first task submits the merge, to start once every task of the array has ended well.
if [ "${SLURM_ARRAY_TASK_ID}" = "${SLURM_ARRAY_TASK_MIN:-0}" ]; then
  sbatch --dependency="afterok:${SLURM_ARRAY_JOB_ID}" --job-name=ardgpu-merge --time=00:10:00 \
    --output="ardgpu-merge-%j.log" --wrap="ardgpu merge-capture --run '$RUN'"
fi
