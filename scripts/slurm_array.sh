#!/bin/bash
# A SLURM array that sorts every recording of a manifest, one per task, with crsae-sort.
#
#   sbatch --array=0-$(( $(tail -n +2 manifest.csv | wc -l) - 1 )) scripts/slurm_array.sh manifest.csv sorted/
#
# Task i sorts manifest row i (0-based, header excluded) into sorted/<name>/. Re-submitting skips
# the recordings that finished (their summary.json exists). When the array is done, collect the
# table with:  crsae-sort batch manifest.csv -o sorted/      (everything is skipped; table printed)
#
# `crsae-sort batch manifest.csv -o sorted/ --engine slurm` writes and submits the same thing
# with the array size filled in (see docs/batch.md).
#SBATCH --job-name=crsae-sort
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%A_%a.out
# On a GPU partition add, for example:
##SBATCH --partition=gpu
##SBATCH --gres=gpu:1
set -euo pipefail

MANIFEST=${1:?usage: sbatch --array=0-N scripts/slurm_array.sh MANIFEST OUTPUT}
OUTPUT=${2:?usage: sbatch --array=0-N scripts/slurm_array.sh MANIFEST OUTPUT}

# activate the environment that has crsae-sort installed, e.g.
# source ~/venvs/crsae/bin/activate
crsae-sort batch "$MANIFEST" -o "$OUTPUT" --engine loop --only "${SLURM_ARRAY_TASK_ID}" \
    --set "num_threads=${SLURM_CPUS_PER_TASK:-1}"
