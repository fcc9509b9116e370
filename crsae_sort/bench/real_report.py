"""The real-clip benchmark written out (see :mod:`.real`): the Harris and Quiroga tables with
their matching rules, the wall-time line, the header line and the figure."""
from __future__ import annotations

import os
import statistics
from pathlib import Path

import numpy as np

from .docs import hardware
from .real_scoring import HARRIS_SLACK_MS, LAG_WINDOW_MS, QUIROGA_SLACK_MS

# Franke et al. 2015 J Comput Neurosci 38:439, Table 1, wave_clus on the full 60-s Easy1 noise 0.15 file;
# the spike count is implied by the table's Det % (see the Quiroga PROVENANCE.txt)
WAVECLUS_EASY1_015 = dict(det=374, cls=5, total=379, n_spikes=3515, duration_s=60)


def _pct(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.1f} %)"


def render_harris(h: dict) -> list[str]:
    """Markdown lines of the Harris clip (``h`` from :func:`.real.run_harris`): rules, a row per unit, merge."""
    fs, b = h["fs"], h["best"]
    lines = [f"### Harris/Henze hc-1 d533101: {_clip(h)}, {len(h['gt'])} intracellular spikes of one cell", "",
             f"Matching: GT times read as 1-based sample indices. Each unit's lag (unit spike time minus GT time) "
             f"is the median, over GT spikes, of the offset to the unit's nearest spike when that lies within "
             f"+-{LAG_WINDOW_MS:g} ms; after removing it, unit spikes and GT spikes are paired one to one within "
             f"+-{HARRIS_SLACK_MS:g} ms (closest first). False positives are the unit's unpaired spikes: within "
             f"these {h['duration_s']:g} s the intracellular record of that cell is complete. Only "
             f"{len(h['gt'])} GT spikes: each is {100 / len(h['gt']):.1f} % of the truth, so these are "
             "small-sample numbers.", "",
             "| unit | spikes | lag ms | hits | misses | false positives |", "|---|---|---|---|---|---|"]
    for m in h["units"]:
        lag = "-" if m.lag_samples is None else f"{1000 * m.lag_samples / fs:+.1f}"
        name = f"**{m.unit}** (most hits)" if m is b else m.unit
        lines.append(f"| {name} | {m.n_spikes} | {lag} | {m.hits} of {len(h['gt'])} | {m.misses} | "
                     f"{m.false_positives} |")
    merge = h["merge"]
    lines += ["", f"- Unit {b.unit}: {b.hits} hits, {b.misses} misses, {b.false_positives} false positives of "
              f"{b.n_spikes} spikes; with a slack of "
              + " and ".join(f"{ms:g} ms: {c.hits} hits, {c.false_positives} false positives"
                             for ms, c in h["check"].items()) + "."]
    if merge is not None and "+" in merge.unit:
        lines.append(f"- Best merge (greedy, each unit shifted by its own lag; units {merge.unit}): {merge.hits} "
                     f"hits, {merge.misses} misses, {merge.false_positives} false positives of {merge.n_spikes}.")
    else:
        lines.append("- Merge of units: no merge (greedy, each unit shifted by its own lag) beats the best single "
                     "unit on hits minus false positives.")
    lines.append(_wall_line(h))
    return lines


def render_quiroga(q: dict) -> list[str]:
    """Markdown lines of the Quiroga clip (``q`` from :func:`.real.run_quiroga`): errors beside wave_clus's."""
    s, fs, p = q["score"], q["fs"], WAVECLUS_EASY1_015
    det = s.misses + s.false_positives
    lines = [f"### Quiroga et al. 2004 Easy1, noise 0.15: {_clip(q)}, {s.n_gt} spikes of {len(s.gt_units)} units",
             "", f"Matching: GT onsets (1-based) made 0-based; the offset of detected spikes to the onsets, "
             f"estimated as for Harris from all units pooled, is {s.offset_samples:+g} samples "
             f"({1000 * s.offset_samples / fs:+.2f} ms, the waveform peak). After removing it, detected spikes "
             f"of any unit and GT spikes are paired one to one within +-{QUIROGA_SLACK_MS:g} ms. Misses: GT "
             "spikes left unpaired; false positives: detected spikes left unpaired; classification errors: "
             "paired spikes whose unit is assigned (Hungarian, one to one on the confusion matrix) to another "
             f"GT unit (majority vote instead: {s.majority_vote_errors}). Rates are per GT spike. wave_clus "
             "numbers are quoted from Franke et al. 2015 (J Comput Neurosci 38:439, Table 1) for the full "
             f"{p['duration_s']}-s file of ~{p['n_spikes']:,} spikes (implied by its Det %): a different, "
             f"{p['duration_s'] / q['duration_s']:.0f} times longer piece of data, not measured by us; it gives "
             "detection errors only as misses plus false positives.", "",
             f"| errors | crsae-sort, {q['duration_s']:.2f}-s excerpt, {s.n_gt} GT spikes (measured) | wave_clus, "
             f"full {p['duration_s']}-s file, ~{p['n_spikes']:,} GT spikes (published) |", "|---|---|---|",
             f"| detection misses | {_pct(s.misses, s.n_gt)} | - |",
             f"| false positives | {_pct(s.false_positives, s.n_gt)} | - |",
             f"| detection (misses + false positives) | {_pct(det, s.n_gt)} | {_pct(p['det'], p['n_spikes'])} |",
             f"| classification | {_pct(s.classification_errors, s.n_gt)} | {_pct(p['cls'], p['n_spikes'])} |",
             f"| total | {_pct(det + s.classification_errors, s.n_gt)} | {_pct(p['total'], p['n_spikes'])} |", "",
             "Confusion of paired spikes (rows: GT unit; columns: crsae unit -> its assigned GT unit):", "",
             "| GT unit | GT spikes | " + " | ".join(f"unit {u} -> {s.assignment.get(u, '-')}"
                                                   for u in s.sorted_units) + " | missed |",
             "|---|---|" + "---|" * (len(s.sorted_units) + 1)]
    for r, g in enumerate(s.gt_units):
        n_gt = int(s.n_gt_per_unit[r])
        lines.append(f"| {g} | {n_gt} | " + " | ".join(str(c) for c in s.confusion[r])
                     + f" | {n_gt - s.confusion[r].sum()} |")
    lines.append("| none (false positives) | - | " + " | ".join(str(v) for v in s.fp_per_unit) + " | - |")
    return lines + ["", _wall_line(q)]


def _clip(r: dict) -> str:
    return f"{r['duration_s']:.2f} s, {r['n_channels']} channel(s), {r['fs'] / 1000:g} kHz"


def _wall_line(r: dict) -> str:
    median = statistics.median(r["walls"])
    cold = (f"; the first took {r['walls'][0]:.1f} s (the first sort in a process also pays for lazy imports and "
            "compilation)") if r["walls"][0] > 1.5 * median else ""
    return (f"- Wall time of `sort()`: {median:.1f} s, median of {len(r['walls'])} in-process runs "
            f"({r['duration_s']:.2f} s of recording){cold}. Spike tables identical across runs: "
            f"{'yes' if r['same'] else 'no'}.")


def plot(path: Path, h: dict, q: dict) -> None:
    """Harris: GT and the best unit's spikes, hits and misses; Quiroga: the confusion matrix."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.6), dpi=100, layout="constrained")
    ax, cx = fig.subplots(1, 2, width_ratios=[2, 1.1])
    b, fs = h["best"], h["fs"]
    gt_s, unit_s = h["gt"] / fs, (h["trains"][int(b.unit)] - b.lag_samples) / fs
    ax.vlines(gt_s, 1.6, 2.4, color="k", lw=1)
    ax.plot(gt_s[b.gt_hit], np.full(b.hits, 2.55), "v", color="tab:green", label="hit")
    ax.plot(gt_s[~b.gt_hit], np.full(b.misses, 2.55), "x", color="tab:red", ms=8, label="miss")
    ax.vlines(unit_s[b.spike_hit], 0.6, 1.4, color="tab:green", lw=1)
    ax.vlines(unit_s[~b.spike_hit], 0.6, 1.4, color="tab:red", lw=1.5, label="false positive")
    ax.set(yticks=[1, 2], yticklabels=[f"unit {b.unit}\n(lag {1000 * b.lag_samples / fs:+.1f} ms removed)",
                                      "intracellular\nGT"], ylim=(0.3, 2.9), xlim=(0, h["duration_s"]),
           xlabel="time (s)", title=f"Harris d533101: {b.hits}/{len(h['gt'])} hits, {b.misses} misses, "
                                     f"{b.false_positives} FPs (slack {HARRIS_SLACK_MS:g} ms)")
    ax.legend(loc="lower left", fontsize=8, ncols=3)
    s = q["score"]
    table = np.column_stack([s.confusion, s.n_gt_per_unit - s.confusion.sum(axis=1)])
    table = np.vstack([table, np.append(s.fp_per_unit, 0)])
    cx.imshow(table, cmap="Blues", aspect="auto")
    for (r, c), v in np.ndenumerate(table):
        if r == table.shape[0] - 1 and c == table.shape[1] - 1:
            continue  # false positives have no "missed" cell
        cx.text(c, r, str(v), ha="center", va="center", color="white" if v > table.max() / 2 else "k")
    cx.set(xticks=range(table.shape[1]), yticks=range(table.shape[0]),
           xticklabels=[f"unit {u}\n->{s.assignment.get(u, '-')}" for u in s.sorted_units] + ["missed"],
           yticklabels=[f"GT {g}" for g in s.gt_units] + ["no GT\n(FP)"],
           title=f"Quiroga Easy1 0.15 ({q['duration_s']:.2f} s)\n{s.misses} missed, {s.false_positives} FPs, "
                 f"{s.classification_errors} class. errors")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def hardware_line(overrides: dict) -> str:
    """The machine, its load and the sort parameters changed from the defaults."""
    return (f"Hardware: {hardware()}; load average {os.getloadavg()[0]:.1f} at the start (a shared machine, "
            f"so wall times are indicative). Sort parameters: "
            + (", ".join(f"{k}={v}" for k, v in overrides.items()) or "defaults, no overrides") + ".")
