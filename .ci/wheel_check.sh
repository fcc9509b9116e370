#!/usr/bin/env bash
# CI, after the tests: what a user who installs from a package index gets. Build a wheel from the
# working tree, install it (not editable) into a fresh virtual environment, and from another folder
# sort a small raw recording with a named probe; check the help texts an installed package shows.
#
# The venv sees this environment's packages (--system-site-packages) so that CI does not download
# torch and SpikeInterface again; crsae-sort itself must come from the wheel, which is checked
# (crsae_sort.__file__ and the crsae-sort command both inside the venv). WHEEL_CHECK_ISOLATED=1
# makes a venv without them (pip then installs every dependency).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
unset PYTHONPATH

# tracked and untracked-but-not-ignored files only: no stale build/ or egg-info reaches the wheel
mkdir "$work/src"
git -C "$repo" ls-files -z --cached --others --exclude-standard \
    | (cd "$repo" && tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$work/src"
python3 -m pip wheel --no-deps -q -w "$work/dist" "$work/src"
wheel="$(ls "$work"/dist/crsae_sort-*.whl)"
python3 -c "import sys, zipfile; sys.exit('crsae_sort/probes/tetrode.json' not in zipfile.ZipFile(sys.argv[1]).namelist())" \
    "$wheel" || { echo "wheel_check: $wheel lacks crsae_sort/probes/tetrode.json" >&2; exit 1; }

if [ "${WHEEL_CHECK_ISOLATED:-0}" = 1 ]; then
    python3 -m venv "$work/venv"
else
    python3 -m venv --system-site-packages "$work/venv"
fi
py="$work/venv/bin/python"
"$py" -m pip install -q torch==2.13.0  # the CPU build first (a no-op when this environment has it), never CUDA wheels
"$py" -m pip install -q "$wheel"

cd "$work"  # away from the source tree
"$py" - "$work/venv" <<'PY'
import sys
from pathlib import Path

import crsae_sort

venv = Path(sys.argv[1]).resolve()
where = Path(crsae_sort.__file__).resolve()
assert venv in where.parents, f"crsae_sort imported from {where}, not from the wheel installed in {venv}"
print(f"wheel_check: crsae_sort from {where}")
PY
export PATH="$work/venv/bin:$PATH"
[ "$(command -v crsae-sort)" = "$work/venv/bin/crsae-sort" ] \
    || { echo "wheel_check: crsae-sort resolves to $(command -v crsae-sort), not the venv's" >&2; exit 1; }
help_text="$(crsae-sort sort --help)"
[[ "$help_text" == *tetrode* && "$help_text" == *neuropixels1* ]] \
    || { echo "wheel_check: crsae-sort sort --help does not list the shipped probes" >&2; exit 1; }
if [[ "$(crsae-sort bench --help)" == *docs/* ]]; then
    echo "wheel_check: crsae-sort bench --help points at docs/, which an installed package lacks" >&2; exit 1
fi

# 8 s of a seeded ground-truth tetrode as raw int16 (0.195 uV per step), sorted with --probe tetrode
"$py" - <<'PY'
import numpy as np
from spikeinterface.core import generate_ground_truth_recording

recording, _ = generate_ground_truth_recording(durations=[8.0], sampling_frequency=30000.0, num_channels=4,
                                               num_units=3, seed=11)
np.round(recording.get_traces() / 0.195).astype("<i2").tofile("tiny.raw")
PY
crsae-sort sort tiny.raw -o sorted --sampling-frequency 30000 --num-channels 4 --dtype int16 --gain-to-uv 0.195 \
    --probe tetrode --device cpu --set max_epochs=1 --set n_windows=48 --set batch_size=16 --set n_iterations=20 \
    2> sort.err
if grep -q "FutureWarning" sort.err; then
    echo "wheel_check: a FutureWarning reached the terminal:" >&2; cat sort.err >&2; exit 1
fi
"$py" -c "import json; s = json.load(open('sorted/summary.json')); assert s['units'], s; print('wheel_check: sorted', len(s['units']), 'units from the installed wheel')"
