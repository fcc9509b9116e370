"""What the sorter comparison (:mod:`.sorters`) runs and how it judges: the sorters and the
parameters changed for them, the ground-truth cases and the presets, and the recordings of each
case (SpikeInterface's generator, MEArec, or units injected into a real recording: :mod:`.hybrid`),
generated once and saved as binary folders."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .hybrid import HYBRID_CASES as _HYBRID, SOURCES as _SOURCES, describe as _hybrid_describe

SORTERS = ["crsae", "spykingcircus2", "tridesclous2", "mountainsort5", "kilosort4"]
# Only what a sorter needs to run at all on this CPU machine; each reason goes into the doc.
CHANGED = {
    "kilosort4": ({"torch_device": "cpu"}, "no GPU here; explicit rather than relying on 'auto'"),
}
# Per case, what a sorter needs to run at all on that recording: the Harris tetrode is sampled at 10 kHz, under
# the 6-7 kHz low-pass edge of the peers' default band-pass (scipy refuses it); 4.5 kHz as in crsae_sort.bench.hybrid
_LOW_PASS = "the recording is sampled at 10 kHz: the default low-pass edge is above Nyquist; 0.45 x 10 kHz"
CASE_CHANGED = {case: {
    "spykingcircus2": ({"filtering": {"freq_min": 150, "freq_max": 4500, "ftype": "bessel", "filter_order": 2}},
                       _LOW_PASS),
    "tridesclous2": ({"freq_max": 4500.0}, _LOW_PASS),
    "mountainsort5": ({"freq_max": 4500}, _LOW_PASS),
} for case in ("hybrid_harris_a", "hybrid_harris_b")}
# name -> (channels, probe layout in words, units, seed); see make_probe for the geometry
CASES = {
    "tetrode": (4, "2 x 2 contacts, 20 um pitch (SpikeInterface's default for 4 channels)", 6, 1),
    "32ch": (32, "2 columns x 16, 20 um pitch (probeinterface generate_multi_columns_probe)", 16, 2),
    "64ch": (64, "2 columns x 32, 20 um pitch (probeinterface generate_multi_columns_probe)", 24, 4),
    "128ch": (128, "4 columns x 32, 20 um pitch (probeinterface generate_multi_columns_probe)", 48, 3),
    "drift_128ch": (128, "4 columns x 32, 20 um pitch; SpikeInterface's generate_drifting_recording (ellipsoid "
                    "templates), zigzag drift of +-20 um with a 40-s period from t = 10 s", 48, 5),
    "np1_384": (384, "Neuropixels 1.0 bank 0 (crsae_sort/probes/neuropixels1.json, from probeinterface): 2 x 2 "
                "staggered columns, 20 um rows, 3.84 mm", 120, 6),
    "mearec_tetrode": (4, "MEAutility `tetrode-mea-l`; MEArec biophysical templates (13 bundled BBP L5 cell "
                       "models x 3 positions, seed 0), 4 excitatory + 2 inhibitory cells, MEArec's default "
                       "noise (10 uV) and 300-6000 Hz filter", 6, 0),
}
# hybrid ground truth on the real recordings of ../shared/data (crsae_sort.bench.hybrid); the length is the
# recording's own, whatever --duration-s says; scored on the injected units only (exhaustive_gt=False)
CASES.update({name: (_SOURCES[spec.source].num_channels, _hybrid_describe(name), spec.num_units, spec.seed)
              for name, spec in _HYBRID.items()})
QUICK = dict(cases=["tetrode", "32ch"], duration_s=10.0)
FULL = dict(cases=["tetrode", "32ch", "64ch", "128ch", "drift_128ch", "mearec_tetrode"], duration_s=60.0)
# the Neuropixels case takes an hour of every sorter on 2 CPU cores: run it on its own (--cases np1_384)
HYBRID = dict(cases=list(_HYBRID), duration_s=None)  # every hybrid case, each the length of its recording
TINY = dict(cases=["tetrode"], duration_s=3.0, sorters=["crsae"])
WELL, REDUNDANT = 0.8, 0.2  # SpikeInterface's default well_detected_score and redundant_score


def make_probe(num_channels: int):
    """The probe of a case: None for the tetrode (SpikeInterface's default), Neuropixels 1.0 for 384
    channels, else 2 columns (32, 64 channels) or 4 (128)."""
    if num_channels == 4:
        return None
    if num_channels == 384:
        from ..io.reading import load_probe

        return load_probe("neuropixels1", 384).probes[0]
    import numpy as np
    from probeinterface import generate_multi_columns_probe

    columns = 2 if num_channels <= 64 else 4
    probe = generate_multi_columns_probe(num_columns=columns, num_contact_per_column=num_channels // columns,
                                         xpitch=20, ypitch=20)
    probe.set_device_channel_indices(np.arange(num_channels))
    return probe


MEAREC = r"""
import sys, MEArec as mr
templates, recording, duration_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
if not __import__("os").path.exists(templates):
    params = mr.get_default_templates_params()
    params.update(probe="tetrode-mea-l", n=3, seed=0)
    tempgen = mr.gen_templates(mr.get_default_config()[0]["cell_models_folder"], params=params, parallel=False,
                               n_jobs=1, templates_tmp_folder=templates + ".tmp", verbose=False)
    mr.save_template_generator(tempgen, templates)
params = mr.get_default_recordings_params()
params["spiketrains"].update(n_exc=4, n_inh=2, duration=duration_s, seed=0)
params["recordings"].update(fs=30000.0, seed=0)
params["templates"].update(seed=0)
mr.save_recording_generator(mr.gen_recordings(templates=templates, params=params, verbose=False), recording)
"""


def mearec_tetrode(work: Path, duration_s: float):
    """A MEArec tetrode; the templates (minutes of NEURON simulation) are kept in the workdir and reused.

    Through MEArec's Python API: its ``gen-templates`` command fails on ``--folder`` (str / str in 1.11).
    """
    from spikeinterface.extractors import read_mearec

    templates, recording = work / "mearec_templates_tetrode.h5", work / f"mearec_tetrode_{duration_s:g}s.h5"
    # in the workdir: MEArec leaves a tmp_params_path.yaml in its working directory
    proc = subprocess.run([sys.executable, "-c", MEAREC, str(templates.resolve()), str(recording.resolve()),
                           str(duration_s)], env=dict(os.environ, PYTHONWARNINGS="ignore"), capture_output=True,
                          text=True, cwd=work)
    if proc.returncode != 0:
        last = [x for x in proc.stderr.splitlines() if x.strip()]
        raise RuntimeError(f"MEArec failed: {last[-1] if last else proc.returncode}")
    return read_mearec(recording)


def drifting(num_channels: int, num_units: int, duration_s: float, seed: int):
    """SpikeInterface's drifting ground truth on the case's probe: zigzag +-20 µm, 40-s period, from 10 s."""
    from spikeinterface.generation import generate_drifting_recording

    motion = dict(drift_mode="zigzag", non_rigid_gradient=None, t_start_drift=10.0, t_end_drift=None, period_s=40)
    displacement = dict(displacement_sampling_frequency=5.0, drift_start_um=[0, 20], drift_stop_um=[0, -20],
                        drift_step_um=1, motion_list=[motion])
    _, rec, gt = generate_drifting_recording(num_units=num_units, duration=duration_s, probe=make_probe(num_channels),
                                             generate_displacement_vector_kwargs=displacement, seed=seed)
    return rec, gt


def generated(case: str, duration_s: float):
    """A case of SpikeInterface's seeded generator (not MEArec, not drifting): the lazy recording and sorting."""
    from spikeinterface.core import generate_ground_truth_recording

    num_channels, _, num_units, seed = CASES[case]
    return generate_ground_truth_recording(durations=[duration_s], sampling_frequency=30000.0,
                                           num_channels=num_channels, num_units=num_units,
                                           probe=make_probe(num_channels), seed=seed)


def make_case(work: Path, case: str, duration_s: float) -> tuple[Path, Path, dict]:
    """Generate a case once, saved as a binary folder; returns its folders and the GT units' SNRs."""
    import spikeinterface as si

    from ..demo import unit_snrs

    if is_hybrid(case):
        return _make_hybrid_case(work, case)
    folder = work / f"{case}_{duration_s:g}s"
    rec_folder, gt_folder, snr_file = folder / "recording", folder / "gt_sorting", folder / "snrs.json"
    if not snr_file.exists():
        shutil.rmtree(folder, ignore_errors=True)
        num_channels, _, num_units, seed = CASES[case]
        if case.startswith("mearec"):
            rec, gt = mearec_tetrode(work, duration_s)
        elif case.startswith("drift"):
            rec, gt = drifting(num_channels, num_units, duration_s, seed)
        else:
            rec, gt = generated(case, duration_s)
        rec = rec.save(folder=rec_folder, n_jobs=1, progress_bar=False)
        gt.save(folder=gt_folder)
        snr_file.write_text(json.dumps(unit_snrs(rec, si.load(gt_folder))))
    return rec_folder, gt_folder, json.loads(snr_file.read_text())


def is_hybrid(case: str) -> bool:
    """A hybrid case: real recording + injected units, scored on those only (``exhaustive_gt=False``)."""
    return case in _HYBRID


def case_folder(work: Path, case: str, duration_s: float | None) -> Path:
    """Where :func:`make_case` saves a case (and the sorters write beside it)."""
    return work / case if is_hybrid(case) else work / f"{case}_{duration_s:g}s"


def _make_hybrid_case(work: Path, case: str) -> tuple[Path, Path, dict]:
    """A hybrid case saved once (int16 binary folder, GT sorting, measured SNRs; targets and amplitude
    factors in hybrid.json). ``FileNotFoundError`` when the real recording is absent."""
    import spikeinterface as si

    from .hybrid import make_hybrid

    folder = work / case
    rec_folder, gt_folder, snr_file = folder / "recording", folder / "gt_sorting", folder / "snrs.json"
    if not snr_file.exists():
        shutil.rmtree(folder, ignore_errors=True)
        built = make_hybrid(case)
        built.recording.save(folder=rec_folder, n_jobs=1, progress_bar=False)
        built.gt_sorting.save(folder=gt_folder)
        (folder / "hybrid.json").write_text(json.dumps(dict(
            target_snrs=built.target_snrs, amplitude_factors=built.amplitude_factors,
            duration_s=si.load(rec_folder).get_total_duration()), indent=1))
        snr_file.write_text(json.dumps(built.snrs))
    return rec_folder, gt_folder, json.loads(snr_file.read_text())
