"""The HTML report of a finished sort: what the model learned, how it fits, and how good the units are.

``build_report(OUT)`` reads a sort's output folder, reopens its recording (``recording.json``,
or the ``recording`` given), and writes ``OUT/report/index.html`` with PNG figures beside it
(``figures.py``): the learned dictionary and λ, each unit (template by probe geometry,
amplitudes, ISI), a stretch of the recording with the reconstruction ``H z`` and the sparse
codes, the training curves, time per stage, SpikeInterface quality metrics and, when ground
truth is given, the comparison with it. The page needs no network: CSS and the table-sorting
script are inline (``html.py``).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from . import figures as figs
from . import html as markup
from .describe import describe_recording, plain_ids  # noqa: F401  (plain_ids: part of the report's API)
from .quality import quality_section
from ..errors import InputError
from ..io import descriptions
from ..summary import Summary

logger = logging.getLogger(__name__)

REPORT_DIR = "report"
ISI_THRESHOLD_MS = 1.5      # refractory period for ISI violations (SpikeInterface's default)
FIT_MS = 60.0               # length of the stretch shown with its reconstruction
FIT_MAX_CHANNELS = 8        # channels shown in the fit figure (those the reconstruction uses most)
ORIGIN_TEXT = dict(init="initial clustering", residual="grown from the residual", split="split")
_REQUIRED = ("summary.json", "params.json", "model.pt", "spikes.npy", "templates.npy", "sorting")


def build_report(output_folder: str | Path, *, recording=None, ground_truth=None) -> Path:
    """Write ``output_folder/report/index.html`` (and its PNGs); returns the path of the page.

    ``recording`` is the sorted SpikeInterface recording; by default it is reopened from
    ``output_folder/recording.json``. ``ground_truth`` is a SpikeInterface sorting (or the path of
    a saved sorting folder) in the recording's sample frames.
    """
    import spikeinterface as si
    import torch

    from ..io.results import load_model
    from ..params import SortParams
    from ..preprocess import preprocess

    folder = Path(output_folder).resolve()
    groups = sorted(p.name for p in folder.glob("group_*") if p.is_dir())
    if groups and not (folder / "model.pt").exists():
        raise InputError(f"{folder} holds channel groups sorted apart ({', '.join(groups)}); report one group at a "
                         f"time: crsae-sort report {folder / groups[0]}")
    missing = [name for name in _REQUIRED if not (folder / name).exists()]
    if not folder.is_dir() or missing:
        raise InputError(f"{folder} is not a crsae-sort output folder (missing {', '.join(missing) or 'folder'}); "
                         "run `crsae-sort sort INPUT -o FOLDER` first and pass that FOLDER")
    summary = Summary.read(folder)
    params = SortParams.from_dict(json.loads((folder / "params.json").read_text()))
    recording = _recording(folder, summary) if recording is None else recording
    _check_recording(recording, summary)
    if ground_truth is not None and not hasattr(ground_truth, "get_unit_spike_train"):
        ground_truth = _load_sorting(Path(ground_truth))
    out = folder / REPORT_DIR
    out.mkdir(exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    descriptions.check_folder(folder / "sorting")
    sorting = si.load(folder / "sorting")
    spikes = np.load(folder / "spikes.npy")
    templates_uv = np.load(folder / "templates.npy")
    saved = load_model(folder / "model.pt", torch.device("cpu"))
    model = saved.model
    logger.info("report: preprocessing the recording as the sort did")
    pre = preprocess(recording, params.preprocess, params.run.seed)
    sections = [_overview(folder, summary, recording, out),
                _dictionary(model, saved.model_sampling_frequency_hz, summary, recording, out),
                _units(summary, templates_uv, spikes, recording, out),
                _fit(model, pre, spikes, params, recording, summary, out),
                _training(folder, out),
                quality_section(sorting, pre.filtered_uv, summary)]
    if ground_truth is not None:
        sections.append(_ground_truth(ground_truth, sorting, out))
    page = out / "index.html"
    page.write_text(markup.page(folder.name, sections), encoding="utf-8")
    logger.info("report written to %s", page)
    return page


def _recording(folder: Path, summary: Summary):
    import spikeinterface as si

    path = folder / "recording.json"
    fix = ("pass the recording with --recording PATH (and --probe if it has none), or "
           "build_report(folder, recording=...)")
    if not path.exists():
        raise InputError(f"{folder} has no recording.json (the sorted recording could not be described as "
                         f"JSON); {fix}")
    try:
        descriptions.check_file(path)
    except InputError as exc:
        raise InputError(f"{exc}; {fix}") from exc
    try:
        return si.load(path)
    except Exception as exc:  # moved or deleted files, missing extractor dependency
        raise InputError(f"cannot reopen the recording described in {path}: {exc}; {fix}") from exc


def _check_recording(recording, summary: Summary) -> None:
    fs, n_channels = recording.get_sampling_frequency(), recording.get_num_channels()
    if n_channels != summary.num_channels or abs(fs - summary.sampling_frequency_hz) > 1e-6 * fs:
        raise InputError(f"the recording ({n_channels} channels, {fs:g} Hz) is not the one sorted "
                         f"({summary.num_channels} channels, {summary.sampling_frequency_hz:g} Hz); "
                         "pass the sorted recording")


def _load_sorting(path: Path):
    import spikeinterface as si

    if path.is_dir():
        descriptions.check_folder(path)
    elif path.exists():
        descriptions.check_file(path)
    try:
        return si.load(path)
    except Exception as exc:
        raise InputError(f"cannot read the ground-truth sorting {path}: {exc}; pass a SpikeInterface sorting "
                         "folder (sorting.save(folder=...))") from exc


def _overview(folder: Path, summary: Summary, recording, out: Path) -> str:
    seconds = summary.seconds
    if seconds:
        figs.plot_timing(out / "timing.png", seconds=seconds, device=summary.device)
    rows = [("output folder", str(folder)), ("recording", describe_recording(recording)),
            ("duration", f"{summary.duration_s:.1f} s at {summary.sampling_frequency_hz:g} Hz; model at "
                         f"{summary.sampling_frequency_hz / summary.decimation:g} Hz"),
            ("units", f"{len(summary.units)} of {summary.num_templates} templates ({_origins(summary)}); "
                      f"{summary.num_spikes} spikes"),
            ("device", summary.device),
            ("time", f"{seconds.get('total', float('nan')):.1f} s "
                     f"({summary.times_real_time or float('nan'):.2f}x real time)")]
    body = markup.table(["", ""], rows, sortable=False, css="kv")
    order = {name: i for i, name in enumerate(figs.STAGES)}
    stage_rows = [(name, f"{seconds[name]:.2f}")
                  for name in sorted(seconds, key=lambda s: (s == "total", order.get(s, len(order))))]
    body += "<h3>Time per stage</h3>" + markup.table(["stage", "seconds"], stage_rows, sortable=False)
    if seconds:
        body += markup.img("timing.png", "seconds per stage")
    return markup.section("overview", "Overview", body)


def _origins(summary: Summary) -> str:
    """How many units came from each origin: "5 initial clustering, 1 grown from the residual"."""
    counts = {o: sum(u.origin == o for u in summary.units) for o in ORIGIN_TEXT}
    return ", ".join(f"{n} {ORIGIN_TEXT[o]}" for o, n in counts.items() if n)


def _dictionary(model, model_sampling_frequency_hz: float, summary: Summary, recording, out: Path) -> str:
    dictionary = model.dense_dictionary().cpu().numpy()
    status = ["dropped"] * len(dictionary)
    for u in summary.units:
        status[u.unit_id] = ""
    for u, label in summary.removed_units.items():
        if u.isdigit() and int(u) < len(status):
            status[int(u)] = f"removed: {label}"
    channel_ids, locations = _model_channels(recording, summary, dictionary.shape[1])
    figs.plot_dictionary(out / "dictionary.png", dictionary=dictionary, lam=model.lam.detach().cpu().numpy(),
                         status=status, model_sampling_frequency_hz=model_sampling_frequency_hz,
                         channel_ids=channel_ids, locations_um=locations)
    text = ("<p>The decoder's weights are the spike templates and each ReLU bias is a template's sparsity "
            "weight λ (a larger λ asks more evidence before a spike is coded). Atoms are shown as the model "
            "sees them: whitened, unit norm, at the model rate, with the channels placed as in the unit figures. "
            "Templates with too few spikes to be kept as units are grey; no unit is drawn grey.</p>")
    return markup.section("dictionary", "What the model learned",
                          text + markup.img("dictionary.png", "learned dictionary"))


def _model_channels(recording, summary: Summary, n_channels: int):
    """The channel ids the model saw (dead channels left out) and their locations (None: no distinct ones)."""
    dead = set(summary.dead_channels_excluded)
    keep = [i for i, c in enumerate(recording.channel_ids) if str(c) not in dead]
    if len(keep) != n_channels:
        return list(range(n_channels)), None
    ids = [recording.channel_ids[i] for i in keep]
    try:
        locations = np.asarray(recording.get_channel_locations(), dtype=float)[keep][:, :2]
    except Exception:  # no probe attached
        return ids, None
    return ids, locations if len(np.unique(locations, axis=0)) == n_channels else None


def _units(summary: Summary, templates_uv: np.ndarray, spikes: np.ndarray, recording, out: Path) -> str:
    fs = recording.get_sampling_frequency()
    try:
        locations = np.asarray(recording.get_channel_locations(), dtype=float)
    except Exception:  # no probe attached: channels are stacked instead
        locations = None
    starts = np.concatenate([[0], np.cumsum([recording.get_num_samples(s) for s in
                                             range(recording.get_num_segments())])])
    parts = []
    for row, unit in enumerate(summary.units):
        u = unit.unit_id
        mine = spikes[spikes["unit_id"] == u]
        isi = np.concatenate([np.diff(np.sort(mine["sample_index"][mine["segment_index"] == s])) / fs * 1000.0
                              for s in range(recording.get_num_segments())])
        n_viol = int(np.sum(isi < ISI_THRESHOLD_MS))
        label = f"{unit.quality}, " if unit.quality else ""
        title = (f"unit {u} ({label}{ORIGIN_TEXT[unit.origin]}):  λ = {unit.lambda_:.3f},  {unit.num_spikes} spikes,  "
                 f"{unit.firing_rate_hz:.2f} Hz,  peak {unit.peak_uv:.0f} µV,  "
                 f"{n_viol} ISI < {ISI_THRESHOLD_MS:g} ms")
        name = f"unit_{u}.png"
        figs.plot_unit(out / name, unit_id=u, template_uv=templates_uv[row], locations_um=locations,
                       channel_ids=list(recording.channel_ids), sampling_frequency_hz=fs,
                       amplitudes_uv=mine["amplitude_uv"],
                       spike_times_s=(mine["sample_index"] + starts[mine["segment_index"]]) / fs,
                       isi_ms=isi, isi_threshold_ms=ISI_THRESHOLD_MS, title=title)
        parts.append(f'<div class="unit" id="unit-{u}">{markup.img(name, title)}</div>')
    text = ("<p>Per unit: its template in µV drawn on the channels at their probe positions, the distribution of "
            "spike amplitudes and their course over the recording (drift shows here), and the inter-spike "
            f"interval histogram with the refractory period (&lt; {ISI_THRESHOLD_MS:g} ms) shaded.</p>")
    return markup.section("units", "Units", text + "".join(parts))


def _fit(model, pre, spikes: np.ndarray, params, recording, summary: Summary, out: Path) -> str:
    import torch

    from ..chunks import with_margin
    from ..infer import code_mass, encode_screened, peak_offsets

    fs, q = recording.get_sampling_frequency(), pre.decimation
    n_fit = int(FIT_MS * fs / 1000)
    times = np.sort(spikes["sample_index"][spikes["segment_index"] == 0])
    start = 0
    if len(times):  # the stretch with the most spikes
        i = int(np.argmax(np.searchsorted(times, times + n_fit) - np.arange(len(times))))
        start = max(0, int(times[i]) - n_fit // 10)
    start = min(start, max(0, recording.get_num_samples(0) - n_fit))
    n_model, k = pre.recording.get_num_samples(0), model.dictionary.shape[-1]
    a, b = start // q, min(n_model, (start + n_fit) // q)
    lo, hi = with_margin(a, b, n_model, model.encoder.margin(k))
    y = torch.from_numpy(np.ascontiguousarray(pre.recording.get_traces(0, lo, hi).T, dtype=np.float32))
    with torch.no_grad():
        z = encode_screened(model, y, params.inference.screen_fraction)       # (C, n - K + 1)
        y_hat = model.decode(z[None])[0]                                     # (M, n)
    back = np.linalg.inv(pre.to_model)                                       # model space -> µV
    data_uv = (y.numpy().T @ back)[a - lo: b - lo]
    recon_uv = (y_hat.numpy().T @ back)[a - lo: b - lo]
    offsets = peak_offsets(model.dictionary)
    mass = code_mass(z).numpy()                                              # as the read-out
    codes = np.zeros((z.shape[0], b - a), np.float32)                        # code mass at its spike's peak
    for c in range(z.shape[0]):
        idx = np.arange(a, b) - lo - offsets[c]
        ok = (idx >= 0) & (idx < z.shape[1])
        codes[c, ok] = mass[c, idx[ok]]
    shown = np.sort(np.argsort(-np.sum(recon_uv ** 2, axis=0))[:FIT_MAX_CHANNELS])
    window = spikes[(spikes["segment_index"] == 0) & (spikes["sample_index"] >= a * q)
                    & (spikes["sample_index"] < b * q)]
    kept = {u.unit_id for u in summary.units}
    figs.plot_fit(out / "fit.png", time_ms=np.arange(a, b) * q / fs * 1000.0, data_uv=data_uv[:, shown],
                  recon_uv=recon_uv[:, shown], channel_ids=[recording.channel_ids[m] for m in shown],
                  code_mass=codes, code_scale=model.reference_amplitude.cpu().numpy(),
                  threshold=params.inference.amplitude_fraction,
                  spike_time_ms=window["sample_index"] / fs * 1000.0, spike_template=window["unit_id"],
                  template_labels=[f"{c}" + ("" if c in kept else " (dropped)") for c in range(len(codes))])
    residual = float(np.sum((data_uv - recon_uv) ** 2) / max(np.sum(data_uv ** 2), 1e-12))
    text = (f"<p>{FIT_MS:g} ms of segment 0 (the stretch with the most spikes), band-passed, in µV, with the "
            f"reconstruction <code>H z</code> mapped back to µV; the residual holds {100 * residual:.0f} % of the "
            "signal energy here. Below, the sparse code of each template (summed over ±1 sample, as the read-out "
            "does), drawn at its spike's peak and scaled by the template's reference amplitude; a code peak "
            "above the dashed line (<code>amplitude_fraction</code>) is a spike (▼).</p>")
    return markup.section("fit", "The fit: recording, reconstruction and sparse codes",
                          text + markup.img("fit.png", "fit"))


def _training(folder: Path, out: Path) -> str:
    path = folder / "training.json"
    if not path.exists():
        return markup.section("training", "Training", "<p>No training: this sort reused a trained model.</p>")
    history = json.loads(path.read_text())
    figs.plot_training(out / "training.png", history=history)
    kept = next((row for row in history if row.get("kept")), None)
    if kept is None or "val_objective" not in kept:  # a training.json of an older version
        text = f"<p>{len(history)} evaluations; the dictionary and λ with the lowest held-out loss were kept.</p>"
    else:
        first, lam, lam0 = history[0], kept["lam"], history[0]["lam"]
        text = (f"<p>{len(history)} evaluations over {history[-1]['step']} steps. Kept: step {kept['step']} "
                f"(the lowest held-out objective, the negative log posterior: {kept['val_objective']:.5f}, start "
                f"{first['val_objective']:.5f}; reconstruction {kept['val_loss']:.5f}, start {first['val_loss']:.5f}), "
                f"with λ {min(lam):.3f}-{max(lam):.3f} (start {min(lam0):.3f}-{max(lam0):.3f}). "
                + ("Step 0 kept: training did not improve on the initial dictionary. " if kept["step"] == 0 else "")
                + "The dictionary and λ are kept together.</p>")
    return markup.section("training", "Training", text + markup.img("training.png", "training curves"))


def _ground_truth(gt_sorting, sorting, out: Path) -> str:
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    comparison = compare_sorter_to_ground_truth(gt_sorting, sorting, exhaustive_gt=True)
    perf = comparison.get_performance()
    agreement = comparison.get_ordered_agreement_scores()
    perf_ordered = perf.loc[agreement.index]
    figs.plot_ground_truth(out / "ground_truth.png", agreement=agreement.to_numpy(dtype=float),
                           gt_labels=[str(u) for u in agreement.index],
                           sorted_labels=[str(u) for u in agreement.columns],
                           performance={c: perf_ordered[c].to_numpy(dtype=float)
                                        for c in ("accuracy", "recall", "precision")})
    match = comparison.hungarian_match_12
    rows = [[u, "none" if str(match[u]) == "-1" else match[u]] + [perf.loc[u, c] for c in perf.columns]
            for u in perf.index]
    text = (f"<p>SpikeInterface's comparison with {len(perf)} ground-truth units (exhaustive ground truth): "
            f"mean accuracy {perf['accuracy'].astype(float).mean():.3f}.</p>")
    table = markup.table(["ground-truth unit", "matched unit"] + list(perf.columns), rows, sortable=True)
    return markup.section("ground-truth", "Ground truth",
                          text + table + markup.img("ground_truth.png", "ground truth"))
