"""crsae-sort on the two real clips with ground truth in ../shared/data (see its README.md).

* Harris/Henze hc-1 d533101, 5-s tetrode at 10 kHz, 11 intracellular spike times of one cell.
  The intracellular times are not aligned to the extracellular spike, so each unit's lag to the
  truth is estimated first, then spikes are matched one to one within a slack.
* Quiroga et al. 2004 "Easy1, noise 0.15", a 2.08-s excerpt at 24 kHz, 121 spikes of 3 units:
  detection misses, false positives and classification errors, wave_clus style, beside the
  errors published for wave_clus on the full 60-s file (quoted, not measured here).

Each clip is sorted in-process with default parameters; wall time is the median of --repeats
runs. Writes the tables into docs/benchmarks.md between the REAL markers and a figure into
docs/img/benchmark_real.png.

    OMP_NUM_THREADS=1 python scripts/benchmark_real.py                # both clips, doc + figure
    python scripts/benchmark_real.py --only quiroga --no-doc --repeats 1   # fast path (tests)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
FIGURE = ROOT / "docs" / "img" / "benchmark_real.png"
HARRIS_MAT = Path("hc1_d533101_harris_cbp_5sec") / "harris_d533101_5sec.mat"
QUIROGA_MAT = Path("quiroga2004_C_Easy1_noise015_cbp_trunc") / "C_Easy1_noise015_5sec.mat"

LAG_WINDOW_MS = 3.0       # lags are estimated from nearest spikes within this distance of a GT time
HARRIS_SLACK_MS = 1.5     # match tolerance after removing the lag
HARRIS_SLACK_CHECK_MS = (1.0, 2.0)
QUIROGA_SLACK_MS = 0.5
OVERRIDES: dict = {}      # sort parameters changed from the defaults (none)
# Franke et al. 2015 J Comput Neurosci 38:439, Table 1, wave_clus on the full 60-s Easy1 noise 0.15 file;
# the spike count is implied by the table's Det % (see the Quiroga PROVENANCE.txt)
WAVECLUS_EASY1_015 = dict(det=374, cls=5, total=379, n_spikes=3515, duration_s=60)


@dataclass
class UnitMatch:
    """One sorted unit (or a merge of units) against one ground-truth train."""
    unit: str
    n_spikes: int
    lag_samples: float | None      # unit spike time minus GT time; None: no spike within the lag window
    hits: int
    misses: int
    false_positives: int
    gt_hit: np.ndarray             # bool per GT spike
    spike_hit: np.ndarray          # bool per unit spike


@dataclass
class DetectionScore:
    """wave_clus-style errors of a whole sorting against a multi-unit ground truth."""
    n_gt: int
    offset_samples: float          # detected time minus GT onset (0-based)
    misses: int
    false_positives: int
    classification_errors: int
    majority_vote_errors: int
    confusion: np.ndarray          # (n_gt_units, n_sorted_units) matched pairs
    n_gt_per_unit: np.ndarray      # (n_gt_units,)
    fp_per_unit: np.ndarray        # (n_sorted_units,) unpaired spikes of each sorted unit
    gt_units: np.ndarray
    sorted_units: np.ndarray
    assignment: dict               # sorted unit -> GT unit (Hungarian)


def estimate_lag(gt: np.ndarray, spikes: np.ndarray, window: float) -> float | None:
    """Median over GT times of (nearest spike - GT time), among those within +-``window`` samples."""
    spikes = np.sort(spikes)
    if len(spikes) == 0 or len(gt) == 0:
        return None
    i = np.clip(np.searchsorted(spikes, gt), 1, len(spikes) - 1) if len(spikes) > 1 else np.zeros(len(gt), int)
    left, right = spikes[np.maximum(i - 1, 0)] - gt, spikes[i] - gt
    nearest = np.where(np.abs(left) <= np.abs(right), left, right)
    near = nearest[np.abs(nearest) <= window]
    return float(np.median(near)) if len(near) else None


def match(gt: np.ndarray, spikes: np.ndarray, slack: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs (gt index, spike index) with |spike - gt| <= ``slack``, closest pairs first."""
    order = np.argsort(spikes, kind="stable")
    s = np.asarray(spikes, dtype=float)[order]
    pairs = []
    for g, t in enumerate(np.asarray(gt, dtype=float)):
        for j in range(np.searchsorted(s, t - slack), np.searchsorted(s, t + slack, side="right")):
            pairs.append((abs(s[j] - t), g, order[j]))
    gt_used, spike_used, out = set(), set(), []
    for _, g, j in sorted(pairs):
        if g not in gt_used and j not in spike_used:
            gt_used.add(g), spike_used.add(j), out.append((g, j))
    out.sort()
    return np.array([g for g, _ in out], dtype=int), np.array([j for _, j in out], dtype=int)


def score_unit(gt: np.ndarray, spikes: np.ndarray, *, lag_window: float, slack: float, unit: str = "",
               lag: float | None = None) -> UnitMatch:
    """Hits, misses and false positives of one unit after removing its lag (estimated unless given)."""
    lag = estimate_lag(gt, spikes, lag_window) if lag is None else lag
    gt_hit, spike_hit = np.zeros(len(gt), bool), np.zeros(len(spikes), bool)
    if lag is not None:
        g, j = match(gt, np.asarray(spikes, dtype=float) - lag, slack)
        gt_hit[g], spike_hit[j] = True, True
    return UnitMatch(unit, len(spikes), lag, int(gt_hit.sum()), int((~gt_hit).sum()), int((~spike_hit).sum()),
                     gt_hit, spike_hit)


def best_merge(gt: np.ndarray, trains: dict, *, lag_window: float, slack: float) -> UnitMatch:
    """Greedy merge: add units (each shifted by its own lag) while hits minus false positives grows."""
    lags = {u: estimate_lag(gt, t, lag_window) for u, t in trains.items()}
    chosen, best = [], None
    while True:
        trial = []
        for u in (u for u in trains if u not in chosen and lags[u] is not None):
            units = chosen + [u]
            merged = np.concatenate([trains[v] - lags[v] for v in units])
            m = score_unit(gt, merged, lag_window=lag_window, slack=slack, unit="+".join(map(str, units)), lag=0.0)
            trial.append((m.hits - m.false_positives, m.hits, u, m))
        if not trial:
            return best
        score, _, u, m = max(trial, key=lambda x: x[:2])
        if best is not None and score <= best.hits - best.false_positives:
            return best
        chosen, best = chosen + [u], m


def detection_score(gt: np.ndarray, gt_units: np.ndarray, spikes: np.ndarray, units: np.ndarray, *,
                    lag_window: float, slack: float) -> DetectionScore:
    """Misses, false positives (any unit, one to one within ``slack`` after the pooled offset) and
    classification errors: matched spikes whose unit's Hungarian-assigned GT unit is another one
    (spikes of units left unassigned count as errors). Majority-vote errors are kept for comparison."""
    from scipy.optimize import linear_sum_assignment

    offset = estimate_lag(gt, spikes, lag_window)
    offset = 0.0 if offset is None else offset  # nothing near any GT spike: all missed
    g, j = match(gt, spikes - offset, slack)
    gt_ids, sorted_ids = np.unique(gt_units), np.unique(units)
    confusion = np.zeros((len(gt_ids), len(sorted_ids)), dtype=int)
    np.add.at(confusion, (np.searchsorted(gt_ids, gt_units[g]), np.searchsorted(sorted_ids, units[j])), 1)
    rows, cols = linear_sum_assignment(-confusion)
    correct = int(confusion[rows, cols].sum())
    unpaired = np.ones(len(spikes), bool)
    unpaired[j] = False
    fp = np.array([(unpaired & (units == u)).sum() for u in sorted_ids])
    order = [c for _, c in sorted(zip(rows, cols))] + sorted(set(range(len(sorted_ids))) - set(cols))
    return DetectionScore(len(gt), offset, len(gt) - len(g), int(unpaired.sum()), len(g) - correct,
                          len(g) - int(confusion.max(axis=0).sum()), confusion[:, order],
                          np.array([(gt_units == u).sum() for u in gt_ids]), fp[order], gt_ids, sorted_ids[order],
                          {sorted_ids[c]: gt_ids[r] for r, c in zip(rows, cols)})


def timed_sorts(recording, repeats: int):
    """Sort ``recording`` ``repeats`` times in-process; the first result, wall times, identical spikes?"""
    from crsae_sort import sort

    results, walls = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        results.append(sort(recording, None, OVERRIDES, progress=False))
        walls.append(time.perf_counter() - t0)
    same = all(np.array_equal(r.spikes, results[0].spikes) for r in results[1:])
    return results[0], walls, same


def run_harris(data: Path, repeats: int) -> dict:
    from scipy.io import loadmat

    from crsae_sort import open_recording

    path = data / HARRIS_MAT
    rec = open_recording(path, sampling_frequency_hz=10000, gain_to_uv=1.0, offset_to_uv=-2048, probe="tetrode")
    fs = rec.get_sampling_frequency()
    gt = loadmat(path)["true_spike_times"].ravel().astype(np.int64) - 1  # MATLAB 1-based -> 0-based
    result, walls, same = timed_sorts(rec, repeats)
    st = result.spikes
    trains = {int(u): st["sample_index"][st["unit_id"] == u] for u in np.unique(st["unit_id"])}
    window, slack = LAG_WINDOW_MS * fs / 1000, HARRIS_SLACK_MS * fs / 1000
    units = [score_unit(gt, t, lag_window=window, slack=slack, unit=str(u)) for u, t in trains.items()]
    units.sort(key=lambda m: (-m.hits, m.false_positives))
    if not units:
        raise SystemExit("crsae-sort found no units on the Harris clip: nothing to score")
    best = units[0]
    check = {ms: score_unit(gt, trains[int(best.unit)], lag_window=window, slack=ms * fs / 1000)
             for ms in HARRIS_SLACK_CHECK_MS}
    merge = best_merge(gt, trains, lag_window=window, slack=slack)
    return dict(fs=fs, gt=gt, units=units, best=best, check=check, merge=merge, walls=walls, same=same,
                trains=trains, duration_s=rec.get_num_samples() / fs, n_channels=rec.get_num_channels())


def run_quiroga(data: Path, repeats: int) -> dict:
    from scipy.io import loadmat

    from crsae_sort import open_recording

    path = data / QUIROGA_MAT
    rec = open_recording(path, sampling_frequency_hz=24000, probe="single")  # the file's dt=1e-4 is wrong
    fs = rec.get_sampling_frequency()
    mat = loadmat(path)
    gt = mat["true_spike_times"].ravel().astype(np.int64) - 1  # 1-based onsets -> 0-based
    gt_units = mat["true_spike_class"].ravel().astype(int)
    result, walls, same = timed_sorts(rec, repeats)
    st = result.spikes
    score = detection_score(gt, gt_units, st["sample_index"], st["unit_id"],
                            lag_window=LAG_WINDOW_MS * fs / 1000, slack=QUIROGA_SLACK_MS * fs / 1000)
    return dict(fs=fs, score=score, walls=walls, same=same, duration_s=rec.get_num_samples() / fs,
                n_channels=rec.get_num_channels())


def _pct(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.1f} %)"


def render_harris(h: dict) -> list[str]:
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


def hardware_line() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmark_speed import hardware

    return (f"Hardware: {hardware()}; load average {os.getloadavg()[0]:.1f} at the start (a shared machine, "
            f"so wall times are indicative). Sort parameters: "
            + (", ".join(f"{k}={v}" for k, v in OVERRIDES.items()) or "defaults, no overrides") + ".")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="folder holding the clips (default: ../shared/data from the repository root)")
    ap.add_argument("--repeats", type=int, default=3, help="sorts per clip; wall time is their median")
    ap.add_argument("--only", choices=("harris", "quiroga"), help="one clip only (print; implies --no-doc)")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/ alone")
    args = ap.parse_args(argv)
    for rel in ([] if args.only == "quiroga" else [HARRIS_MAT]) + ([] if args.only == "harris" else [QUIROGA_MAT]):
        if not (args.data / rel).exists():
            raise SystemExit(f"{args.data / rel} not found: pass --data FOLDER (the shared/data folder)")
    header = hardware_line()
    h = run_harris(args.data, args.repeats) if args.only != "quiroga" else None
    q = run_quiroga(args.data, args.repeats) if args.only != "harris" else None
    command = "OMP_NUM_THREADS=1 python scripts/benchmark_real.py" + (
        f" --repeats {args.repeats}" if args.repeats != 3 else "")
    lines = [f"`{command}`", "", header, ""]
    lines += (render_harris(h) + [""] if h else []) + (render_quiroga(q) if q else [])
    if h and q:
        lines += ["", f"![Harris hits, misses and false positives; Quiroga confusion](img/{FIGURE.name})"]
    text = "\n".join(lines)
    print(text)
    if not args.no_doc and args.only is None:
        from benchmark_speed import write_block  # on sys.path since hardware_line()

        plot(FIGURE, h, q)
        write_block(DOC, "REAL", text)


if __name__ == "__main__":
    main()
