"""Accuracy and speed of crsae against other spike sorters on SpikeInterface ground truth.

Every sorter runs through SpikeInterface's ``run_sorter`` with its own defaults, in its own
process, on the same saved binary folder. Each case is a `generate_ground_truth_recording` at
30 kHz with a fixed seed. Sortings are scored with ``compare_sorter_to_ground_truth``
(exhaustive_gt=True). The hybrid cases (:mod:`.hybrid`: generated units injected into real
recordings) are scored on the injected units only (exhaustive_gt=False) and written to their own
section (HYBRID markers, docs/benchmarks_hybrid.json). The table goes into docs/benchmarks.md
between the SORTERS markers, the results into docs/benchmarks_sorters.json and a plot into docs/img/sorters_accuracy_vs_time.png.
The cases and presets are in `crsae_sort.bench.sorters_cases`, the tables and the figure in
`crsae_sort.bench.sorters_report`.

    python scripts/benchmark_sorters.py                   # quick: tetrode and 32 channels, 10 s
    python scripts/benchmark_sorters.py --full            # + 128 channels and a MEArec tetrode, 60 s
    python scripts/benchmark_sorters.py --tiny --no-doc   # 3-s tetrode, crsae only (the test)
    python scripts/benchmark_sorters.py --hybrid          # units injected into the real recordings of
                                                          # ../shared/data; their own HYBRID table
    python scripts/benchmark_sorters.py --cases 32ch --sorters crsae kilosort4 --duration-s 20
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .docs import ROOT, commit, emit, hardware
from .sorters_cases import (CASE_CHANGED, CASES, CHANGED, FULL, HYBRID, QUICK, REDUNDANT, SORTERS, TINY, WELL, case_folder, is_hybrid,
                            make_case)
from .sorters_report import DOC_PNG, case_markdown, doc_json, plot, publish

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
from crsae_sort.bench.docs import emit  # the parent reads this line off the child's stdout
emit("RESULT " + json.dumps(res))
"""


def run_sorter_in_child(sorter: str, rec_folder: Path, out: Path, threads: int, timeout_s: float,
                        params: dict | None = None) -> dict:
    """``run_sorter`` in a fresh process (this crsae_sort on its path); a result row, ``status`` ok or failed.

    ``params`` are given to ``run_sorter`` on top of the ones :data:`CHANGED` sets for this sorter.
    """
    params = {**CHANGED.get(sorter, ({}, ""))[0], **(params or {})}
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


def score(gt_folder: Path, sorting_folder: Path, snrs: dict, *, exhaustive_gt: bool = True,
          selection_snrs: dict | None = None) -> dict:
    """SpikeInterface's comparison with the ground truth: per-unit and mean scores, unit counts.

    With ``exhaustive_gt=False`` (hybrid cases: the recording's own units are not in the truth) the
    false-positive and redundant counts are not defined and come back None. ``accuracy_snr5`` is the
    mean over the units whose ``selection_snrs`` (default ``snrs``) are >= 5: the hybrid cases select by
    their target SNRs, since a unit placed at 5.0 measures 4.99 to 5.01."""
    import spikeinterface as si
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    gt, sorting = si.load(gt_folder), si.load(sorting_folder)
    keys = ("accuracy", "recall", "precision")
    if len(sorting.unit_ids):
        cmp = compare_sorter_to_ground_truth(gt, sorting, exhaustive_gt=exhaustive_gt)
        perf = cmp.get_performance()
        units = {str(u): dict(snr=snrs[str(u)], **{k: float(perf.loc[u, k]) for k in keys}) for u in gt.unit_ids}
        counts = dict(well_detected=cmp.count_well_detected_units(WELL),
                      false_positive=cmp.count_false_positive_units(REDUNDANT) if exhaustive_gt else None,
                      redundant=cmp.count_redundant_units(REDUNDANT) if exhaustive_gt else None)
    else:  # SpikeInterface's matching refuses an empty sorting: nothing was found
        units = {str(u): dict(snr=snrs[str(u)], **dict.fromkeys(keys, 0.0)) for u in gt.unit_ids}
        zero = 0 if exhaustive_gt else None
        counts = dict(well_detected=0, false_positive=zero, redundant=zero)
    mean = {k: sum(x[k] for x in units.values()) / len(units) for k in keys}
    selection = selection_snrs or snrs
    good = [x["accuracy"] for u, x in units.items() if selection[u] >= 5]
    return dict(units=units, **mean, accuracy_snr5=sum(good) / len(good) if good else None,
                n_units=int(len(sorting.unit_ids)), **counts)


def keep_other_cases(report: dict, earlier: dict) -> dict:
    """``report`` plus what an ``earlier`` report has and it did not redo, each marked with its own run:
    whole cases, and within a case both ran (same length), the rows of sorters this run left out. A case this
    run could not generate (MEArec missing, say) keeps the earlier results, with why it was not re-run."""
    run = {k: earlier.get(k) for k in ("command", "commit", "date", "hardware", "load_before", "load_after")}
    old = {c["case"]: c for c in earlier.get("cases", [])}
    cases = []
    for case in report["cases"]:
        before = old.get(case["case"])
        if case.get("error") and before and not before.get("error"):
            cases.append(dict(before, kept_from=before.get("kept_from") or run, not_rerun=case["error"]))
            continue
        if before and before["duration_s"] == case["duration_s"] and not case.get("error"):
            done = {r["sorter"] for r in case["results"]}
            rows = [dict(r, kept_from=r.get("kept_from") or before.get("kept_from") or run)
                    for r in before["results"] if r["sorter"] not in done]
            case = dict(case, results=rows + case["results"])
        cases.append(case)
    done = {c["case"] for c in cases}
    kept = [dict(c, kept_from=c.get("kept_from") or run) for c in old.values() if c["case"] not in done]
    report = dict(report, cases=cases)
    order = list(CASES)
    cases = sorted(report["cases"] + kept, key=lambda c: order.index(c["case"]) if c["case"] in order else len(order))
    return dict(report, cases=cases)


def _hardware(threads: int) -> str:
    """The hardware line with torch at the sorters' thread count."""
    import torch

    torch.set_num_threads(threads)
    return hardware()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help=f"cases {FULL['cases']}, {FULL['duration_s']:g} s each")
    ap.add_argument("--tiny", action="store_true", help="3-s tetrode, crsae only (the test)")
    ap.add_argument("--hybrid", action="store_true",
                    help="units injected into the real recordings of ../shared/data (their own table)")
    ap.add_argument("--cases", nargs="+", choices=list(CASES), help="override the mode's cases")
    ap.add_argument("--sorters", nargs="+", default=None, help=f"default: {' '.join(SORTERS)}")
    ap.add_argument("--duration-s", type=float, default=None, help="override the mode's recording length")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads and n_jobs given to every sorter")
    ap.add_argument("--timeout-s", type=float, default=1800.0, help="a sorter running longer is reported failed")
    ap.add_argument("--workdir", type=Path, default=None, help="recordings and sorter folders (default: a temp dir)")
    ap.add_argument("--no-doc", action="store_true", help="results only in the workdir; leave docs/ alone")
    ap.add_argument("--resume", action="store_true",
                    help="with --workdir: reuse the sorter runs a stopped run of the same command finished there")
    ap.add_argument("--keep-others", action="store_true",
                    help="keep the cases of docs/benchmarks_sorters.json that this run does not redo (each "
                         "marked with the run it came from) instead of replacing the whole table")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="rewrite the docs from a saved benchmarks_sorters.json without sorting again")
    args = ap.parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        report["rendered_by"] = f"python scripts/benchmark_sorters.py --from-json {args.from_json}"
        plot(report["cases"], args.from_json.parent / DOC_PNG.name)
        publish(report, args.from_json.parent)
        return report
    mode = "tiny" if args.tiny else "full" if args.full else "hybrid" if args.hybrid else "quick"
    preset = dict(tiny=TINY, full=FULL, quick=QUICK, hybrid=HYBRID)[mode]
    cases = args.cases or preset["cases"]
    if len({is_hybrid(c) for c in cases}) > 1:
        ap.error("hybrid cases have their own table: run them apart from the generated ones (--hybrid)")
    sorters = args.sorters or preset.get("sorters", SORTERS)
    duration_s = args.duration_s or preset["duration_s"] or QUICK["duration_s"]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="crsae_sorters_"))
    work.mkdir(parents=True, exist_ok=True)
    t_start, load_before = time.perf_counter(), os.getloadavg()[0]
    report = dict(mode=mode, command="python scripts/benchmark_sorters.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  threads=args.threads, hardware=_hardware(args.threads), load_before=load_before, cases=[],
                  commit=commit(), date=time.strftime("%Y-%m-%d"))
    for case in cases:
        try:
            rec_folder, gt_folder, snrs = make_case(work, case, duration_s)
        except Exception as exc:  # e.g. MEArec missing: the case gets a line saying so
            reason = " ".join(str(exc).split())[:200] or repr(exc)
            emit(f"{case:8s} not generated: {reason}", flush=True)
            report["cases"].append(dict(case=case, duration_s=duration_s, snrs={}, results=[], error=reason))
            continue
        entry = dict(case=case, duration_s=duration_s, snrs=snrs, results=[])
        if is_hybrid(case):  # the recording's own length, the targets and the scaling of the injected units
            entry.update(json.loads((rec_folder.parent / "hybrid.json").read_text()))
        for sorter in sorters:
            out = case_folder(work, case, duration_s) / sorter
            done = out.parent / (out.name + "_result.json")  # one run's row, for --resume
            if args.resume and done.exists():
                res = json.loads(done.read_text())
            else:
                params = CASE_CHANGED.get(case, {}).get(sorter, ({}, ""))[0]
                res = run_sorter_in_child(sorter, rec_folder, out, args.threads, args.timeout_s, params)
                done.write_text(json.dumps(res))
            if res["status"] == "ok":
                res.update(score(gt_folder, out.parent / (out.name + "_sorting"), snrs,
                                 exhaustive_gt=not is_hybrid(case), selection_snrs=entry.get("target_snrs")))
            emit(f"{case:8s} {sorter:15s} " + (f"accuracy {res['accuracy']:.3f}  {res['wall_s']:.1f} s"
                                                if res["status"] == "ok" else f"failed: {res['reason']}"), flush=True)
            entry["results"].append(res)
        report["cases"].append(entry)
    report.update(load_after=os.getloadavg()[0], total_s=time.perf_counter() - t_start)
    (work / "benchmarks_sorters.json").write_text(json.dumps(report, indent=1))
    plot(report["cases"], work / DOC_PNG.name)
    emit("\n".join(line for case in report["cases"] for line in case_markdown(case)))
    if not args.no_doc:
        if args.keep_others and doc_json(report).exists():
            report = keep_other_cases(report, json.loads(doc_json(report).read_text()))
            plot(report["cases"], work / DOC_PNG.name)
        publish(report, work)
    emit(f"results in {work}; {report['total_s']:.0f} s in all", flush=True)
    return report


if __name__ == "__main__":
    main()
