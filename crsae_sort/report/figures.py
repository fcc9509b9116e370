"""The report's figures: matplotlib (Agg backend), one PNG per function, never shown on screen.

Every function takes plain numpy arrays (shapes and units in the names and docstrings) and a
path, writes one PNG and returns nothing. ``report.py`` gathers the data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 100
STAGES = ("preprocess", "init", "train", "grow", "inference", "curate", "export")  # pipeline order
MAX_TEMPLATE_CHANNELS = 16  # a unit's template is drawn on the channels nearest its peak channel


#: tab10 without its grey (index 7): grey means "too few spikes" in the dictionary figure
_PALETTE = [i for i in range(10) if i != 7]
DROPPED_GREY = "0.6"


def unit_color(template_index: int):
    """One colour per template, the same in every figure; never grey."""
    from matplotlib import colormaps

    return colormaps["tab10"](_PALETTE[template_index % len(_PALETTE)])


def _figure(width_in: float, height_in: float, **kwargs):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained", **kwargs)


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=DPI)


def plot_unit(path: Path, *, unit_id: int, template_uv: np.ndarray, locations_um: np.ndarray | None,
              channel_ids, sampling_frequency_hz: float, amplitudes_uv: np.ndarray, spike_times_s: np.ndarray,
              isi_ms: np.ndarray, isi_threshold_ms: float, title: str) -> None:
    """One unit: template by probe geometry, amplitude histogram, amplitude over time, ISI histogram.

    ``template_uv`` ``(num_samples, num_channels)`` µV; ``locations_um`` ``(num_channels, 2)`` or
    None (channels then stacked); ``amplitudes_uv`` and ``spike_times_s`` one entry per spike;
    ``isi_ms`` inter-spike intervals within segments.
    """
    color = unit_color(unit_id)
    fig = _figure(12.0, 3.4)
    grid = fig.add_gridspec(1, 4, width_ratios=[1.3, 1, 1.4, 1])
    _template_by_geometry(fig.add_subplot(grid[0]), template_uv, locations_um, channel_ids,
                          sampling_frequency_hz, color)
    ax = fig.add_subplot(grid[1])
    ax.hist(amplitudes_uv, bins=min(40, max(5, len(amplitudes_uv) // 5)), orientation="horizontal", color=color)
    ax.set(xlabel="spikes", ylabel="amplitude (µV)", title="amplitude distribution")
    ax = fig.add_subplot(grid[2], sharey=ax)
    ax.plot(spike_times_s, amplitudes_uv, ".", ms=3, color=color, alpha=0.7)
    ax.set(xlabel="time (s)", title="amplitude over time")
    ax = fig.add_subplot(grid[3])
    bins = np.arange(0.0, 50.0 + 0.5, 0.5)
    ax.hist(isi_ms, bins=bins, color=color)
    ax.axvspan(0, isi_threshold_ms, color="red", alpha=0.15)
    n_viol = int(np.sum(isi_ms < isi_threshold_ms))
    ax.set(xlabel="inter-spike interval (ms)", ylabel="count", xlim=(0, 50),
           title=f"ISI: {n_viol} < {isi_threshold_ms:g} ms")
    fig.suptitle(title, fontsize=11, fontweight="bold")
    _save(fig, path)


def _template_by_geometry(ax, template_uv: np.ndarray, locations_um, channel_ids, fs_hz: float, color) -> None:
    n_samples, n_channels = template_uv.shape
    peak_channel = int(np.abs(template_uv).max(axis=0).argmax())
    peak_uv = float(np.abs(template_uv).max()) or 1.0
    if locations_um is None or len(np.unique(locations_um, axis=0)) < n_channels:
        locations_um = np.stack([np.zeros(n_channels), -np.arange(n_channels) * 20.0], axis=1)
    dist = np.linalg.norm(locations_um - locations_um[peak_channel], axis=1)
    shown = np.argsort(dist, kind="stable")[:MAX_TEMPLATE_CHANNELS]
    loc = locations_um[shown]
    pairwise = np.linalg.norm(loc[:, None] - loc[None], axis=2)
    pitch = float(pairwise[pairwise > 0].min()) if len(loc) > 1 else 20.0
    width, height = 0.85 * pitch, 0.9 * pitch
    t = np.linspace(-0.5, 0.5, n_samples) * width
    for ch, (x0, y0) in zip(shown, loc):
        ax.plot(x0 + t, y0 + template_uv[:, ch] / peak_uv * height, color=color, lw=1.5 if ch == peak_channel else 1)
        ax.text(x0 - 0.52 * width, y0, str(channel_ids[ch]), fontsize=7, color="0.4", ha="right", va="center")
    # scale bars: 1 ms and a round number of µV
    bar_uv = _round_down(peak_uv / 2)
    x0, y0 = loc[:, 0].min() - 0.6 * width, loc[:, 1].min() - height
    ms = width / (n_samples / fs_hz * 1000.0)  # x extent of 1 ms
    ax.plot([x0, x0 + ms], [y0, y0], color="k", lw=1)
    ax.plot([x0, x0], [y0, y0 + bar_uv / peak_uv * height], color="k", lw=1)
    ax.text(x0, y0 - 0.15 * pitch, f"1 ms, {bar_uv:g} µV", fontsize=7, va="top")
    ax.set_xlim(loc[:, 0].min() - 0.75 * width, loc[:, 0].max() + 0.55 * width)
    ax.set_ylim(y0 - 0.5 * pitch, loc[:, 1].max() + 1.05 * height)
    ax.set_title(f"template ({len(shown)}/{n_channels} channels)")
    ax.set_aspect("auto")
    ax.axis("off")


def _round_down(x: float) -> float:
    """The largest of 1, 2, 5 x 10^n not above ``x`` (for scale bars)."""
    e = 10.0 ** np.floor(np.log10(x))
    return float(next(m * e for m in (5, 2, 1) if m * e <= x))


def plot_dictionary(path: Path, *, dictionary: np.ndarray, lam: np.ndarray, status: list[str],
                    model_sampling_frequency_hz: float, channel_ids, locations_um: np.ndarray | None) -> None:
    """The learned dictionary (the network's weights) ``(C, M, K)``, one panel per atom, with λ_c.

    Atoms are in model space (whitened, unit ℓ2 norm); channels are stacked as the unit figures place them:
    by depth (``locations_um`` ``(M, 2)``: larger y higher up), else channel 0 at the top, and labelled with
    ``channel_ids``. ``status`` ``(C,)``: "" for a unit, "dropped" (too few spikes: grey) or "removed: <label>".
    """
    n_atoms, n_channels, k = dictionary.shape
    row = _stack_rows(n_channels, locations_um)  # row 0 at the top
    cols = min(n_atoms, 6)
    rows = int(np.ceil(n_atoms / cols))
    fig = _figure(2.0 * cols + 0.8, 0.25 * n_channels * rows + 1.2 * rows + 0.4)
    t_ms = np.arange(k) / model_sampling_frequency_hz * 1000.0
    step = float(np.abs(dictionary).max()) * 1.2 or 1.0
    every = max(1, int(np.ceil(n_channels / 32)))  # at most 32 labels a panel
    labelled = np.flatnonzero(np.arange(n_channels) % every == 0)
    for c in range(n_atoms):
        ax = fig.add_subplot(rows, cols, c + 1)
        color = DROPPED_GREY if status[c] == "dropped" else unit_color(c)
        for m in range(n_channels):
            ax.plot(t_ms, dictionary[c, m] - row[m] * step, color=color, lw=1)
        ax.set_title(f"template {c}  λ={lam[c]:.2f}" + (f" ({status[c]})" if status[c] else ""), fontsize=9)
        ax.set_yticks(-row[labelled] * step, [str(channel_ids[m]) for m in labelled] if c % cols == 0 else [])
        ax.set_xlabel("ms", fontsize=8)
        ax.tick_params(labelsize=6 if n_channels > 16 else 7)
    where = "by depth, deepest at the bottom" if locations_um is not None else "channel 0 at the top"
    fig.suptitle(f"learned dictionary (decoder weights), whitened, unit norm; channels {where} as in the unit "
                 "figures", fontsize=10)
    _save(fig, path)


def _stack_rows(n_channels: int, locations_um: np.ndarray | None) -> np.ndarray:
    """Row of each channel in a vertical stack (0 at the top): by y descending (then x), as a probe is drawn."""
    if locations_um is None or len(locations_um) != n_channels:
        return np.arange(n_channels)
    order = np.lexsort((locations_um[:, 0], -locations_um[:, 1]))
    row = np.empty(n_channels, dtype=np.int64)
    row[order] = np.arange(n_channels)
    return row


def plot_fit(path: Path, *, time_ms: np.ndarray, data_uv: np.ndarray, recon_uv: np.ndarray, channel_ids,
             code_mass: np.ndarray, code_scale: np.ndarray, threshold: float, spike_time_ms: np.ndarray,
             spike_template: np.ndarray, template_labels: list[str]) -> None:
    """A stretch of the recording with the reconstruction ``H z`` and the sparse codes below it.

    ``data_uv`` and ``recon_uv`` ``(n, M)`` µV at ``time_ms`` ``(n,)``. ``code_mass`` ``(C, n)`` is the code
    summed over +-1 sample (the read-out's spike amplitude) at the same times (code position + template
    peak offset, so a code sits at its spike's peak), drawn with height ``mass_c / code_scale_c`` (the
    template's reference amplitude) beside a dashed line at ``threshold`` (``amplitude_fraction``);
    detected spikes are ``spike_time_ms`` with template ``spike_template``.
    """
    n_channels = data_uv.shape[1]
    n_atoms = code_mass.shape[0]
    fig = _figure(12.0, 0.9 * n_channels + 0.35 * n_atoms + 1.8)
    grid = fig.add_gridspec(2, 1, height_ratios=[0.9 * n_channels, 0.35 * n_atoms + 0.6])
    ax = fig.add_subplot(grid[0])
    step = float(np.percentile(np.abs(data_uv), 99.9)) * 1.6 or 1.0
    for m in range(n_channels):
        ax.plot(time_ms, data_uv[:, m] - m * step, color="0.55", lw=0.8, label="recording" if m == 0 else None)
        ax.plot(time_ms, recon_uv[:, m] - m * step, color="C3", lw=0.9, label="reconstruction H z" if m == 0 else None)
    ax.set_yticks(-np.arange(n_channels) * step, [str(c) for c in channel_ids])
    ax.set(ylabel="channel", title=f"band-passed recording (µV, {step:.0f} µV between traces) and the "
                                   "model's reconstruction")
    ax.legend(loc="upper right", fontsize=8, ncols=2)
    ax.tick_params(labelbottom=False)
    raster = fig.add_subplot(grid[1], sharex=ax)
    for c in range(n_atoms):
        nz = np.flatnonzero(code_mass[c] > 0)
        height = 0.6 * np.clip(code_mass[c, nz] / max(float(code_scale[c]), 1e-12), 0.0, 1.4)
        raster.vlines(time_ms[nz], -c, -c + height, color=unit_color(c), lw=1.5)
        raster.axhline(-c + 0.6 * threshold, color="0.7", lw=0.6, ls="--")
        mine = spike_template == c
        raster.plot(spike_time_ms[mine], np.full(mine.sum(), -c + 0.92), "v", ms=4, color=unit_color(c))
    raster.set_yticks(-np.arange(n_atoms) + 0.4, template_labels)
    raster.set_ylim(-n_atoms + 0.8, 1.1)
    raster.set(xlabel="time (ms)", ylabel="template",
               title="sparse codes per template (height: code mass over the template's reference amplitude; "
                     "dashed: spike threshold; ▼ detected spike)")
    raster.set_xlim(time_ms[0], time_ms[-1])
    _save(fig, path)


def plot_training(path: Path, *, history: list[dict]) -> None:
    """Held-out and training loss, and λ per template, against the training step."""
    steps = np.array([row["step"] for row in history])
    fig = _figure(12.0, 3.4)
    ax = fig.add_subplot(1, 2, 1)
    train = np.array([row["train_loss"] for row in history], dtype=float)
    ax.plot(steps, np.array([row["val_loss"] for row in history], dtype=float), "o-", label="held-out")
    ok = np.isfinite(train)
    ax.plot(steps[ok], train[ok], "s--", label="training batch")
    kept = [row["step"] for row in history if row.get("kept")]
    for a_step in kept:
        ax.axvline(a_step, color="0.5", ls=":", label=f"kept (step {a_step})")
    ax.set(xlabel="step (mini-batch)", ylabel="½‖y − H z‖² per sample", title="reconstruction loss")
    ax.legend(fontsize=8)
    if all("val_objective" in row for row in history):
        twin = ax.twinx()
        twin.plot(steps, [row["val_objective"] for row in history], "^-", color="C3", ms=3)
        twin.set_ylabel("held-out objective (selection)", color="C3")
    ax = fig.add_subplot(1, 2, 2)
    lam = np.array([row["lam"] for row in history], dtype=float)  # (evaluations, C)
    for c in range(lam.shape[1]):
        ax.plot(steps, lam[:, c], "o-", ms=3, color=unit_color(c), label=f"template {c}")
    ax.set(xlabel="step (mini-batch)", ylabel="λ", title="sparsity weight λ per template (ReLU bias)")
    if lam.shape[1] <= 12:
        ax.legend(fontsize=7, ncols=2)
    if len(steps) == 1:
        for a in fig.axes:
            a.text(0.5, 0.05, "one evaluation only: training stopped before eval_every steps",
                   transform=a.transAxes, ha="center", fontsize=8, color="0.4")
    _save(fig, path)


def plot_timing(path: Path, *, seconds: dict, device: str) -> None:
    """Wall seconds per pipeline stage (``seconds`` holds stage -> s, and ``total``)."""
    order = {name: i for i, name in enumerate(STAGES)}
    stages = sorted((s for s in seconds if s != "total"), key=lambda s: order.get(s, len(order)))
    fig = _figure(8.0, 0.4 * len(stages) + 1.2)
    ax = fig.add_subplot(1, 1, 1)
    values = [seconds[s] for s in stages]
    ax.barh(stages[::-1], values[::-1], color="C0")
    for y, v in enumerate(values[::-1]):
        ax.text(v, y, f" {v:.2f} s", va="center", fontsize=8)
    ax.set_xlim(0, max(values + [1e-3]) * 1.25)
    ax.set(xlabel="seconds", title=f"time per stage on {device}: {seconds.get('total', sum(values)):.1f} s in all")
    _save(fig, path)


def plot_ground_truth(path: Path, *, agreement: np.ndarray, gt_labels: list[str], sorted_labels: list[str],
                      performance: dict[str, np.ndarray]) -> None:
    """Agreement matrix ``(num_gt_units, num_sorted_units)`` and accuracy, recall, precision per GT unit."""
    fig = _figure(12.0, 0.3 * max(len(gt_labels), 6) + 1.6)
    ax = fig.add_subplot(1, 2, 1)
    im = ax.imshow(agreement, vmin=0, vmax=1, cmap="Greens", aspect="auto")
    ax.set_xticks(range(len(sorted_labels)), sorted_labels, fontsize=8)
    ax.set_yticks(range(len(gt_labels)), gt_labels, fontsize=8)
    ax.set(xlabel="sorted unit", ylabel="ground-truth unit", title="agreement")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax = fig.add_subplot(1, 2, 2)
    y = np.arange(len(gt_labels))
    for i, (name, values) in enumerate(performance.items()):
        ax.barh(y + (i - 1) * 0.27, values, height=0.27, label=name)
    ax.set_yticks(y, gt_labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="score", title="per ground-truth unit")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path)
