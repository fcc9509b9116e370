"""The sorter comparison written out (see :mod:`.sorters`): a table per case, the accuracy
against wall time figure, and docs/benchmarks.md (SORTERS markers) with
docs/benchmarks_sorters.json."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .docs import DOC, DOCS, write_block
from .sorters_cases import CASE_CHANGED, CASES, CHANGED, FULL, QUICK, REDUNDANT, SORTERS, WELL, is_hybrid

DOC_JSON = DOCS / "benchmarks_sorters.json"
DOC_PNG = DOCS / "img" / "sorters_accuracy_vs_time.png"
MARKER = "SORTERS"
# the hybrid cases (real recordings + injected units) have their own section, results and figure
HYBRID_JSON = DOCS / "benchmarks_hybrid.json"
HYBRID_PNG = DOCS / "img" / "hybrid_accuracy_vs_time.png"
HYBRID_MARKER = "HYBRID"


def _is_hybrid_report(report: dict) -> bool:
    return bool(report["cases"]) and all(is_hybrid(c["case"]) for c in report["cases"])


def doc_json(report: dict) -> Path:
    """The results file in docs/ a report goes to: the hybrid one or the generated cases' one."""
    return HYBRID_JSON if _is_hybrid_report(report) else DOC_JSON


def _fmt(x, spec=".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def case_markdown(case: dict) -> list[str]:
    """One case: its description, a row per sorter, crsae's stages and the accuracy per GT unit."""
    num_channels, layout, num_units, seed = CASES[case["case"]]
    if case.get("error"):
        return [f"**{case['case']}**: not generated: {case['error']}", ""]
    snrs = sorted(case["snrs"].values(), reverse=True)
    head = (f"**{case['case']}**: {num_channels} channels, {layout}; {case['duration_s']:.1f} s. Injected units' SNR "
            f"(measured, band-passed peak / MAD): " if is_hybrid(case["case"]) else
            f"**{case['case']}**: {num_channels} channels, {layout}; {num_units} units, seed {seed}, "
            f"{case['duration_s']:g} s. GT unit SNRs: ")
    lines = [head + f"{', '.join(f'{s:.1f}' for s in snrs)}.", "",
             *_kept_line(case),
             "| sorter | version | units found | accuracy | recall | precision | accuracy (SNR >= 5) | "
             "well detected | false positive | redundant | wall s | x real time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    runs = list(dict.fromkeys(json.dumps(r["kept_from"], sort_keys=True) for r in case["results"]
                              if r.get("kept_from")))
    for r in case["results"]:
        mark = f" [{runs.index(json.dumps(r['kept_from'], sort_keys=True)) + 1}]" if r.get("kept_from") else ""
        r = dict(r, sorter=r["sorter"] + mark)
        if r["status"] != "ok":
            lines.append(f"| {r['sorter']} | {r.get('version') or '?'} | failed: {r['reason'].replace('|', '/')} "
                         "| | | | | | | | | |")
            continue
        lines.append(f"| {r['sorter']} | {r['version']} | {r['n_units']} | {r['accuracy']:.3f} | {r['recall']:.3f} | "
                     f"{r['precision']:.3f} | {_fmt(r['accuracy_snr5'])} | {r['well_detected']} | "
                     f"{_fmt(r['false_positive'], 'd')} | {_fmt(r['redundant'], 'd')} | {r['wall_s']:.1f} | "
                     f"{case['duration_s'] / r['wall_s']:.2f}x |")
    for i, run in enumerate(runs):
        lines += ["", f"[{i + 1}] This row is from {_run_text(json.loads(run))}."]
    for r in case["results"]:
        if r.get("stages_s"):
            order = ["preprocess", "init", "train", "inference", "export", "total"]
            stages = ", ".join(f"{k} {r['stages_s'][k]:.1f}" for k in sorted(r["stages_s"], key=lambda k: (
                order.index(k) if k in order else len(order), k)))
            lines += ["", f"crsae stages (s): {stages}."]
    ok = [r for r in case["results"] if r["status"] == "ok"]
    if ok and case.get("target_snrs"):  # hybrid: the per-unit table in the open, with the targets
        lines += ["", "Accuracy per injected unit:", "",
                  "| injected unit | target SNR | SNR | " + " | ".join(r["sorter"] for r in ok) + " |",
                  "|---|---|---|" + "---|" * len(ok)]
        for u, snr in sorted(case["snrs"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {u} | {case['target_snrs'][u]:.2f} | {snr:.2f} | "
                         + " | ".join(f"{r['units'][u]['accuracy']:.3f}" for r in ok) + " |")
    elif ok:
        lines += ["", "<details><summary>accuracy per ground-truth unit</summary>", "",
                  "| GT unit | SNR | " + " | ".join(r["sorter"] for r in ok) + " |", "|---|---|" + "---|" * len(ok)]
        for u, snr in sorted(case["snrs"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {u} | {snr:.1f} | " + " | ".join(f"{r['units'][u]['accuracy']:.2f}" for r in ok) + " |")
        lines += ["", "</details>"]
    return lines + [""]


def _run_text(run: dict) -> str:
    """An earlier run, in words: its command, commit, date and load."""
    commit = f"commit {run['commit']}" if run.get("commit") else "a commit not recorded (runs record it since)"
    when = f", {run['date']}" if run.get("date") else ""
    return (f"an earlier run (`{run.get('command')}`; {commit}{when}; load average "
            f"{_fmt(run.get('load_before'), '.2f')} before)")


def _kept_line(case: dict) -> list[str]:
    """For a case kept from an earlier run: which run."""
    run = case.get("kept_from")
    why = f" (this run could not generate it: {case['not_rerun']})" if case.get("not_rerun") else ""
    return [f"*Not re-run{why}: from {_run_text(run)}.*", ""] if run else []


def plot(cases: list[dict], path: Path) -> None:
    """Mean accuracy against wall time (log), one panel per case, one marker per sorter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    cases = [c for c in cases if not c.get("error")]
    if not cases:
        return
    style = {name: (f"C{i}", m) for i, (name, m) in enumerate(zip(SORTERS, "o s ^ D v".split()))}
    fig, axes = plt.subplots(1, len(cases), figsize=(4.5 * len(cases), 4.4), squeeze=False)
    for ax, case in zip(axes[0], cases):
        for r in case["results"]:
            if r["status"] == "ok":
                color, marker = style.get(r["sorter"], ("k", "o"))
                ax.scatter(r["wall_s"], r["accuracy"], color=color, marker=marker, s=60, label=r["sorter"])
        failed = [r["sorter"] for r in case["results"] if r["status"] != "ok"]
        ax.set(xscale="log", ylim=(0, 1.05), xlabel="wall time (s, log)", ylabel="mean accuracy over GT units",
               title=f"{case['case']}, {case['duration_s']:.3g} s" + (f"\nfailed: {', '.join(failed)}" if failed else ""))
        ax.axvline(case["duration_s"], color="gray", ls=":", lw=1)
        ax.text(case["duration_s"], 0.02, " real time", color="gray", fontsize=8)
        ax.set_xticks([t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)],
                      labels=[f"{t:g}" for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        walls = [r["wall_s"] for r in case["results"] if r["status"] == "ok"] + [case["duration_s"]]
        ax.set_xlim(min(walls) / 1.5, max(walls) * 1.5)
        ax.grid(alpha=0.3)
    handles = {h.get_label(): h for ax in axes[0] for h in ax.collections}
    fig.legend([handles[k] for k in SORTERS if k in handles], [k for k in SORTERS if k in handles],
               loc="lower center", ncol=len(SORTERS), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_doc(report: dict, cases: list[dict]) -> None:
    """The SORTERS block of docs/benchmarks.md (its section appended first if the doc has none); the
    HYBRID block for a report of hybrid cases."""
    if _is_hybrid_report(report):
        return _write_hybrid_doc(report, cases)
    changed = _changed()
    text = "\n".join([
        f"Hardware: {report['hardware']}. " + _run_line(report, f"Mode: {report['mode']}; command"), "",
        f"Every sorter: `run_sorter(name, recording, folder=..., remove_existing_folder=True)` with its defaults, "
        f"each in a fresh process, on the same binary folder; SpikeInterface's global `n_jobs` and the "
        f"torch/BLAS/numba threads set to {report['threads']}. Parameters changed from defaults: {changed}. "
        f"Scores: `compare_sorter_to_ground_truth(..., exhaustive_gt=True)`; accuracy, recall and precision are means "
        f"over all GT units (SNR as `compute_snrs`); well detected = agreement >= {WELL}, false positive = "
        f"unmatched with agreement < {REDUNDANT}, redundant = not the best match but agreement >= {REDUNDANT} "
        f"(SpikeInterface's defaults). Wall time is `run_sorter` alone (not the process start), one run each.", "",
        *[line for case in cases for line in case_markdown(case)],
        f"![accuracy against wall time](img/{DOC_PNG.name})"])
    section = ("## Against other sorters on ground truth\n\n"
               f"`python scripts/benchmark_sorters.py` (quick: {', '.join(QUICK['cases'])}, {QUICK['duration_s']:g} s "
               f"each); `python scripts/benchmark_sorters.py --full` ({', '.join(FULL['cases'])}, "
               f"{FULL['duration_s']:g} s each). Results also in `docs/benchmarks_sorters.json`.")
    write_block(DOC, MARKER, text, section=section)

def _changed() -> str:
    """The parameters changed for every case, with the reason, in words."""
    return "; ".join(f"{s}: `{json.dumps(p)}` ({why})" for s, (p, why) in CHANGED.items()) or "none"


def _run_line(report: dict, command_label: str) -> str:
    """How loaded the machine was, the command and how long the run took."""
    return (f"Load average (1 min) {report['load_before']:.2f} before, {report['load_after']:.2f} after (the machine "
            f"may be shared). {command_label}: `{report['command']}`; {report['total_s'] / 60:.1f} min in all"
            + (f"; table rewritten by `{report['rendered_by']}`." if report.get("rendered_by") else "."))


def _case_changes() -> dict:
    """sorter -> (params, why) of :data:`CASE_CHANGED`, once per sorter."""
    return {s: v for per_case in CASE_CHANGED.values() for s, v in per_case.items()}


def _write_hybrid_doc(report: dict, cases: list[dict]) -> None:
    """The HYBRID block of docs/benchmarks.md (its section appended at the end if the doc has none)."""
    changed = _changed()
    text = "\n".join([
        f"Commit {report.get('commit') or '?'}, {report.get('date', '')}. Hardware: {report['hardware']}. "
        + _run_line(report, "Command"), "",
        f"Every sorter as in the section above (`run_sorter` with its defaults, a fresh process, the same int16 "
        f"binary folder, {report['threads']} threads); parameters changed: {changed}; "
        + "; ".join(f"on {', '.join(sorted(c for c in CASE_CHANGED if s in CASE_CHANGED[c]))}, {s}: "
                    f"`{json.dumps(p)}` ({why})" for s, (p, why) in _case_changes().items())
        + ". Scores: "
        f"`compare_sorter_to_ground_truth(..., exhaustive_gt=False)` on the injected units only (the recording's "
        f"own units are not in the truth, so false-positive and redundant counts are not defined: n/a); accuracy, "
        f"recall, precision are means over the injected units, **accuracy (SNR >= 5) is the headline**; well "
        f"detected = agreement >= {WELL}.", "",
        *[line for case in cases for line in case_markdown(case)],
        f"![accuracy against wall time, hybrid cases](img/{HYBRID_PNG.name})"])
    section = ("## Hybrid ground truth on real recordings\n\n"
               "`python scripts/benchmark_sorters.py --hybrid` injects generated units (SpikeInterface's "
               "`generate_hybrid_recording`, seeded) into every real recording of `../shared/data` that can hold "
               "them and sorts them with crsae and every peer (`crsae_sort.bench.hybrid` builds the cases; "
               "results also in `docs/benchmarks_hybrid.json`). Each injected unit is scaled so that its SNR, "
               "the peak of its mean waveform over the MAD noise of that channel, both on the band-passed "
               "(300-6000 Hz; 300-4500 Hz at 10 kHz) traces, lands on a target; the SNRs below are measured "
               "after injection. Draw `_a` of each recording spreads its units over SNR 6-12, draw `_b` over "
               "5-10.")
    write_block(DOC, HYBRID_MARKER, text, section=section)


def publish(report: dict, work: Path) -> None:
    """Results JSON, plot and table into docs/ (the hybrid ones for a report of hybrid cases)."""
    png = HYBRID_PNG if _is_hybrid_report(report) else DOC_PNG
    doc_json(report).write_text(json.dumps(report, indent=1))
    if (work / DOC_PNG.name).exists():
        png.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / DOC_PNG.name, png)
    write_doc(report, report["cases"])
