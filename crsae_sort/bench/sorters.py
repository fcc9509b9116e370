"""Accuracy and speed of crsae against other spike sorters on SpikeInterface ground truth.

Every sorter runs through SpikeInterface's ``run_sorter`` with its own defaults, in its own
process, on the same saved binary folder. Each case is a `generate_ground_truth_recording` at
30 kHz with a fixed seed. Sortings are scored with ``compare_sorter_to_ground_truth``
(exhaustive_gt=True). The table goes into docs/benchmarks.md between the SORTERS markers, the
results into docs/benchmarks_sorters.json and a plot into docs/img/sorters_accuracy_vs_time.png.

    python scripts/benchmark_sorters.py                   # quick: tetrode and 32 channels, 10 s
    python scripts/benchmark_sorters.py --full            # + 128 channels and a MEArec tetrode, 60 s
    python scripts/benchmark_sorters.py --tiny --no-doc   # 3-s tetrode, crsae only (the test)
    python scripts/benchmark_sorters.py --cases 32ch --sorters crsae kilosort4 --duration-s 20
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
DOC_JSON = ROOT / "docs" / "benchmarks_sorters.json"
DOC_PNG = ROOT / "docs" / "img" / "sorters_accuracy_vs_time.png"
MARKER = "SORTERS"

SORTERS = ["crsae", "spykingcircus2", "tridesclous2", "mountainsort5", "kilosort4"]
# Only what a sorter needs to run at all on this CPU machine; each reason goes into the doc.
CHANGED = {
    "kilosort4": ({"torch_device": "cpu"}, "no GPU here; explicit rather than relying on 'auto'"),
}
# name -> (channels, probe layout in words, units, seed); see make_probe for the geometry
CASES = {
    "tetrode": (4, "2 x 2 contacts, 20 um pitch (SpikeInterface's default for 4 channels)", 6, 1),
    "32ch": (32, "2 columns x 16, 20 um pitch (probeinterface generate_multi_columns_probe)", 16, 2),
    "128ch": (128, "4 columns x 32, 20 um pitch (probeinterface generate_multi_columns_probe)", 48, 3),
    "mearec_tetrode": (4, "MEAutility `tetrode-mea-l`; MEArec biophysical templates (13 bundled BBP L5 cell "
                       "models x 3 positions, seed 0), 4 excitatory + 2 inhibitory cells, MEArec's default "
                       "noise (10 uV) and 300-6000 Hz filter", 6, 0),
}
QUICK = dict(cases=["tetrode", "32ch"], duration_s=10.0)
FULL = dict(cases=["tetrode", "32ch", "128ch", "mearec_tetrode"], duration_s=60.0)
TINY = dict(cases=["tetrode"], duration_s=3.0, sorters=["crsae"])
WELL, REDUNDANT = 0.8, 0.2  # SpikeInterface's default well_detected_score and redundant_score

CHILD = r"""
import json, sys, time, traceback, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
sorter, rec_folder, out, params, threads = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5])
res = dict(sorter=sorter, status="failed", version=None)
try:
    import torch
    torch.set_num_threads(threads)
    import crsae_sort  # registers "crsae" with SpikeInterface
    import spikeinterface as si
    import spikeinterface.sorters as ss
    si.set_global_job_kwargs(n_jobs=threads, progress_bar=False)
    cls = ss.sorter_dict[sorter]
    if not cls.is_installed():
        raise RuntimeError("not installed: " + " ".join(str(cls.installation_mesg).split())[:120])
    res["version"] = str(cls.get_sorter_version())
    rec = si.load(rec_folder)
    t0 = time.perf_counter()
    sorting = ss.run_sorter(sorter, rec, folder=out, remove_existing_folder=True, verbose=False, **params)
    res["wall_s"] = time.perf_counter() - t0
    sorting.save(folder=out.parent / (out.name + "_sorting"), overwrite=True)
    res["status"] = "ok"
    summary = out / "sorter_output" / "crsae" / "summary.json"
    if summary.exists():
        res["stages_s"] = json.loads(summary.read_text())["seconds"]
except Exception as exc:
    trace = ""
    log = out / "spikeinterface_log.json"
    if log.exists():
        trace = json.loads(log.read_text()).get("error_trace") or ""
        trace = "\n".join(trace) if isinstance(trace, list) else str(trace)
    lines = [l.strip() for l in (trace or traceback.format_exc()).splitlines() if l.strip()]
    res["reason"] = (lines[-1] if lines else repr(exc))[:200]
print("RESULT " + json.dumps(res), flush=True)
"""


def make_probe(num_channels: int):
    """The probe of a case: None for the tetrode (SpikeInterface's default), else 2 or 4 columns."""
    if num_channels == 4:
        return None
    import numpy as np
    from probeinterface import generate_multi_columns_probe

    columns = 2 if num_channels == 32 else 4
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
    proc = subprocess.run([sys.executable, "-c", MEAREC, str(templates), str(recording), str(duration_s)],
                          env=dict(os.environ, PYTHONWARNINGS="ignore"), capture_output=True, text=True)
    if proc.returncode != 0:
        last = [x for x in proc.stderr.splitlines() if x.strip()]
        raise RuntimeError(f"MEArec failed: {last[-1] if last else proc.returncode}")
    return read_mearec(recording)


def make_case(work: Path, case: str, duration_s: float) -> tuple[Path, Path, dict]:
    """Generate a case once, saved as a binary folder; returns its folders and the GT units' SNRs."""
    import spikeinterface as si
    from spikeinterface.core import generate_ground_truth_recording
    from crsae_sort.demo import unit_snrs

    folder = work / f"{case}_{duration_s:g}s"
    rec_folder, gt_folder, snr_file = folder / "recording", folder / "gt_sorting", folder / "snrs.json"
    if not snr_file.exists():
        shutil.rmtree(folder, ignore_errors=True)
        num_channels, _, num_units, seed = CASES[case]
        if case.startswith("mearec"):
            rec, gt = mearec_tetrode(work, duration_s)
        else:
            rec, gt = generate_ground_truth_recording(durations=[duration_s], sampling_frequency=30000.0,
                                                      num_channels=num_channels, num_units=num_units,
                                                      probe=make_probe(num_channels), seed=seed)
        rec = rec.save(folder=rec_folder, n_jobs=1, progress_bar=False)
        gt.save(folder=gt_folder)
        snr_file.write_text(json.dumps(unit_snrs(rec, si.load(gt_folder))))
    return rec_folder, gt_folder, json.loads(snr_file.read_text())


def run_sorter_in_child(sorter: str, rec_folder: Path, out: Path, threads: int, timeout_s: float) -> dict:
    params = CHANGED.get(sorter, ({}, ""))[0]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               NUMBA_NUM_THREADS=str(threads), PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-c", CHILD, sorter, str(rec_folder), str(out), json.dumps(params), str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return dict(sorter=sorter, status="failed", reason=f"timed out after {timeout_s:.0f} s", version=None)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    last = [x for x in proc.stderr.splitlines() if x.strip()]
    return dict(sorter=sorter, status="failed", version=None,
                reason=f"process died (exit code {proc.returncode}): {last[-1][:160] if last else 'no output'}")


def score(gt_folder: Path, sorting_folder: Path, snrs: dict) -> dict:
    import spikeinterface as si
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    gt, sorting = si.load(gt_folder), si.load(sorting_folder)
    cmp = compare_sorter_to_ground_truth(gt, sorting, exhaustive_gt=True)
    perf = cmp.get_performance()
    units = {str(u): dict(snr=snrs[str(u)], **{k: float(perf.loc[u, k]) for k in ("accuracy", "recall", "precision")})
             for u in gt.unit_ids}
    mean = {k: sum(x[k] for x in units.values()) / len(units) for k in ("accuracy", "recall", "precision")}
    good = [x["accuracy"] for x in units.values() if x["snr"] >= 5]
    return dict(units=units, **mean, accuracy_snr5=sum(good) / len(good) if good else None,
                n_units=int(len(sorting.unit_ids)), well_detected=cmp.count_well_detected_units(WELL),
                false_positive=cmp.count_false_positive_units(REDUNDANT), redundant=cmp.count_redundant_units(REDUNDANT))


def hardware(threads: int) -> str:
    sys.path.insert(0, str(ROOT / "scripts"))
    import torch
    from benchmark_speed import hardware as cpu_line

    torch.set_num_threads(threads)
    return cpu_line()


def _fmt(x, spec=".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def case_markdown(case: dict) -> list[str]:
    num_channels, layout, num_units, seed = CASES[case["case"]]
    if case.get("error"):
        return [f"**{case['case']}**: not generated: {case['error']}", ""]
    snrs = sorted(case["snrs"].values(), reverse=True)
    lines = [f"**{case['case']}**: {num_channels} channels, {layout}; {num_units} units, seed {seed}, "
             f"{case['duration_s']:g} s. GT unit SNRs: {', '.join(f'{s:.1f}' for s in snrs)}.", "",
             "| sorter | version | units found | accuracy | recall | precision | accuracy (SNR >= 5) | "
             "well detected | false positive | redundant | wall s | x real time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in case["results"]:
        if r["status"] != "ok":
            lines.append(f"| {r['sorter']} | {r.get('version') or '?'} | failed: {r['reason'].replace('|', '/')} "
                         "| | | | | | | | | |")
            continue
        lines.append(f"| {r['sorter']} | {r['version']} | {r['n_units']} | {r['accuracy']:.3f} | {r['recall']:.3f} | "
                     f"{r['precision']:.3f} | {_fmt(r['accuracy_snr5'])} | {r['well_detected']} | "
                     f"{r['false_positive']} | {r['redundant']} | {r['wall_s']:.1f} | "
                     f"{case['duration_s'] / r['wall_s']:.2f}x |")
    for r in case["results"]:
        if r.get("stages_s"):
            order = ["preprocess", "init", "train", "inference", "export", "total"]
            stages = ", ".join(f"{k} {r['stages_s'][k]:.1f}" for k in sorted(r["stages_s"], key=lambda k: (
                order.index(k) if k in order else len(order), k)))
            lines += ["", f"crsae stages (s): {stages}."]
    ok = [r for r in case["results"] if r["status"] == "ok"]
    if ok:
        lines += ["", "<details><summary>accuracy per ground-truth unit</summary>", "",
                  "| GT unit | SNR | " + " | ".join(r["sorter"] for r in ok) + " |", "|---|---|" + "---|" * len(ok)]
        for u, snr in sorted(case["snrs"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {u} | {snr:.1f} | " + " | ".join(f"{r['units'][u]['accuracy']:.2f}" for r in ok) + " |")
        lines += ["", "</details>"]
    return lines + [""]


def plot(cases: list[dict], path: Path) -> None:
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
               title=f"{case['case']}, {case['duration_s']:g} s" + (f"\nfailed: {', '.join(failed)}" if failed else ""))
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
    changed = "; ".join(f"{s}: `{json.dumps(p)}` ({why})" for s, (p, why) in CHANGED.items()) or "none"
    text = "\n".join([
        f"Hardware: {report['hardware']}. Load average (1 min) {report['load_before']:.2f} before, "
        f"{report['load_after']:.2f} after (the machine may be shared). Mode: {report['mode']}; command: "
        f"`{report['command']}`; {report['total_s'] / 60:.1f} min in all"
        + (f"; table rewritten by `{report['rendered_by']}`." if report.get("rendered_by") else "."), "",
        f"Every sorter: `run_sorter(name, recording, folder=..., remove_existing_folder=True)` with its defaults, "
        f"each in a fresh process, on the same binary folder; SpikeInterface's global `n_jobs` and the "
        f"torch/BLAS/numba threads set to {report['threads']}. Parameters changed from defaults: {changed}. "
        f"Scores: `compare_sorter_to_ground_truth(..., exhaustive_gt=True)`; accuracy, recall and precision are means "
        f"over all GT units (SNR as `compute_snrs`); well detected = agreement >= {WELL}, false positive = "
        f"unmatched with agreement < {REDUNDANT}, redundant = not the best match but agreement >= {REDUNDANT} "
        f"(SpikeInterface's defaults). Wall time is `run_sorter` alone (not the process start), one run each.", "",
        *[line for case in cases for line in case_markdown(case)],
        f"![accuracy against wall time](img/{DOC_PNG.name})"])
    doc = DOC.read_text()
    start, end = f"<!-- {MARKER}:START -->", f"<!-- {MARKER}:END -->"
    if start not in doc:
        doc = doc.rstrip("\n") + (
            "\n\n## Against other sorters on ground truth\n\n"
            f"`python scripts/benchmark_sorters.py` (quick: {', '.join(QUICK['cases'])}, {QUICK['duration_s']:g} s each); "
            f"`python scripts/benchmark_sorters.py --full` ({', '.join(FULL['cases'])}, {FULL['duration_s']:g} s each). "
            "Results also in `docs/benchmarks_sorters.json`.\n\n"
            f"{start}\n{end}\n")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    DOC.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def publish(report: dict, work: Path) -> None:
    """Results JSON, plot and table into docs/."""
    DOC_JSON.write_text(json.dumps(report, indent=1))
    if (work / DOC_PNG.name).exists():
        DOC_PNG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / DOC_PNG.name, DOC_PNG)
    write_doc(report, report["cases"])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help=f"cases {FULL['cases']}, {FULL['duration_s']:g} s each")
    ap.add_argument("--tiny", action="store_true", help="3-s tetrode, crsae only (the test)")
    ap.add_argument("--cases", nargs="+", choices=list(CASES), help="override the mode's cases")
    ap.add_argument("--sorters", nargs="+", default=None, help=f"default: {' '.join(SORTERS)}")
    ap.add_argument("--duration-s", type=float, default=None, help="override the mode's recording length")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads and n_jobs given to every sorter")
    ap.add_argument("--timeout-s", type=float, default=1800.0, help="a sorter running longer is reported failed")
    ap.add_argument("--workdir", type=Path, default=None, help="recordings and sorter folders (default: a temp dir)")
    ap.add_argument("--no-doc", action="store_true", help="results only in the workdir; leave docs/ alone")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="rewrite the docs from a saved benchmarks_sorters.json without sorting again")
    args = ap.parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        report["rendered_by"] = f"python scripts/benchmark_sorters.py --from-json {args.from_json}"
        plot(report["cases"], args.from_json.parent / DOC_PNG.name)
        publish(report, args.from_json.parent)
        return report
    mode = "tiny" if args.tiny else "full" if args.full else "quick"
    preset = dict(tiny=TINY, full=FULL, quick=QUICK)[mode]
    cases = args.cases or preset["cases"]
    sorters = args.sorters or preset.get("sorters", SORTERS)
    duration_s = args.duration_s or preset["duration_s"]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="crsae_sorters_"))
    work.mkdir(parents=True, exist_ok=True)
    t_start, load_before = time.perf_counter(), os.getloadavg()[0]
    report = dict(mode=mode, command="python scripts/benchmark_sorters.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  threads=args.threads, hardware=hardware(args.threads), load_before=load_before, cases=[])
    for case in cases:
        try:
            rec_folder, gt_folder, snrs = make_case(work, case, duration_s)
        except Exception as exc:  # e.g. MEArec missing: the case gets a line saying so
            reason = " ".join(str(exc).split())[:200] or repr(exc)
            print(f"{case:8s} not generated: {reason}", flush=True)
            report["cases"].append(dict(case=case, duration_s=duration_s, snrs={}, results=[], error=reason))
            continue
        entry = dict(case=case, duration_s=duration_s, snrs=snrs, results=[])
        for sorter in sorters:
            out = work / f"{case}_{duration_s:g}s" / sorter
            res = run_sorter_in_child(sorter, rec_folder, out, args.threads, args.timeout_s)
            if res["status"] == "ok":
                res.update(score(gt_folder, out.parent / (out.name + "_sorting"), snrs))
            print(f"{case:8s} {sorter:15s} " + (f"accuracy {res['accuracy']:.3f}  {res['wall_s']:.1f} s"
                                                if res["status"] == "ok" else f"failed: {res['reason']}"), flush=True)
            entry["results"].append(res)
        report["cases"].append(entry)
    report.update(load_after=os.getloadavg()[0], total_s=time.perf_counter() - t_start)
    (work / "benchmarks_sorters.json").write_text(json.dumps(report, indent=1))
    plot(report["cases"], work / DOC_PNG.name)
    print("\n".join(line for case in report["cases"] for line in case_markdown(case)))
    if not args.no_doc:
        publish(report, work)
    print(f"results in {work}; {report['total_s']:.0f} s in all", flush=True)
    return report


if __name__ == "__main__":
    main()
