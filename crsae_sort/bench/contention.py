"""Sorts sharing the CPU: one sort alone, two started together, and `batch -j 2`, before and after
the thread fix (crsae_sort/threads.py), side by side on the same machine.

"Before" is the code of the commit before the fix and "after" that of HEAD, each exported with
`git archive` into a scratch folder and run from there (PYTHONPATH), so nothing in the package
needs a switch to turn the fix off. Every run is a fresh `python -m crsae_sort` process with
OMP_WAIT_POLICY and OMP_NUM_THREADS removed from its environment, as a user's shell would have
them; the variants alternate within each repeat so that both see the same background load, which
is recorded (/proc/loadavg) beside every run, with the CPU seconds each scenario burnt. Writes the
table into docs/benchmarks.md between the CONTENTION markers.

    python scripts/benchmark_contention.py                   # demo tetrode, 30 s, 2 repeats
    python scripts/benchmark_contention.py --repeats 3 --no-doc
    python scripts/benchmark_contention.py --before 134af13   # any commit to compare with
    python scripts/benchmark_contention.py --from-run DIR --no-doc   # reprint a finished run
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .docs import DOC, ROOT, commit, emit

FIX_FILE = "crsae_sort/threads.py"  # the commit that added it is the fix; its parent is "before"
SCENARIOS = ("solo", "pair", "batch")


def before_commit() -> str:
    added = subprocess.run(["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%H", "--", FIX_FILE],
                           capture_output=True, text=True, check=True).stdout.split()
    return f"{added[-1]}^" if added else "HEAD"  # not committed yet: HEAD is the code before it


def export_tree(ref: str, folder: Path) -> str:
    """The package at ``ref`` in ``folder``; returns the resolved commit."""
    sha = commit(ref)
    if sha is None:
        raise SystemExit(f"git cannot resolve {ref!r} in {ROOT}: the contention benchmark needs a git checkout")
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "crsae_sort"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return sha


def make_recording(folder: Path, duration_s: float) -> Path:
    import warnings

    from ..demo import ground_truth_tetrode

    recording, _ = ground_truth_tetrode(duration_s)
    with warnings.catch_warnings():  # generated data has no provenance to save
        warnings.simplefilter("ignore")
        recording.save(folder=folder, n_jobs=1, progress_bar=False)
    return folder


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _env(tree: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(PYTHONPATH=str(tree), PYTHONWARNINGS="ignore")
    return env


def _launch(tree: Path, args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "crsae_sort", *args], env=_env(tree), cwd=log.parent,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen) -> tuple[int, float]:
    """Exit code and CPU seconds (user + system, with the workers it waited for) of ``proc``."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def run_scenario(scenario: str, tree: Path, rec: Path, work: Path, sets: list[str]) -> dict:
    """Wall seconds until the last process ends, the slowest training, and the CPU seconds of all.

    CPU seconds tell spinning from sharing whatever the neighbours do: a thread that spins while
    it waits burns CPU time, one that sleeps does not."""
    work.mkdir(parents=True, exist_ok=True)
    for old in work.iterdir():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    load_before = load()
    t0 = time.perf_counter()
    if scenario == "batch":
        manifest = work / "manifest.csv"
        manifest.write_text(f"path,name\n{rec},a\n{rec},b\n")
        procs = [_launch(tree, ["batch", str(manifest), "-o", str(work / "out"), "--engine", "processpoolexecutor",
                                "-j", "2", "--set", "device=cpu", *sets], work / "batch.log")]
        summaries = [work / "out" / name / "sorter_output" / "crsae" / "summary.json" for name in ("a", "b")]
    else:
        n = 1 if scenario == "solo" else 2
        procs = [_launch(tree, ["sort", str(rec), "-o", str(work / f"out{i}"), "--device", "cpu", *sets],
                         work / f"sort{i}.log") for i in range(n)]
        summaries = [work / f"out{i}" / "summary.json" for i in range(n)]
    codes, cpu = zip(*[_wait(p) for p in procs])
    wall = time.perf_counter() - t0
    if any(codes) or not all(s.exists() for s in summaries):
        logs = "\n".join(p.read_text()[-2000:] for p in work.glob("*.log"))
        raise SystemExit(f"{scenario} failed in {tree}:\n{logs}")
    train = [json.loads(s.read_text())["seconds"]["train"] for s in summaries]
    return dict(wall_s=wall, train_s=max(train), cpu_s=sum(cpu), load_before=load_before, load_after=load())


def table(runs: list[dict], shas: dict, header: str) -> str:
    def med(variant, scenario, key):
        return statistics.median(r[key] for r in runs if r["variant"] == variant and r["scenario"] == scenario)

    lines = [header, "",
             "| code | alone: wall s | train s | CPU s | two sorts together: wall s (x alone) | train s | CPU s | "
             "`batch -j 2`: wall s (x alone) | train s | CPU s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for variant in ("before", "after"):
        solo = med(variant, "solo", "wall_s")
        cells = [f"{variant} ({shas[variant]})", f"{solo:.1f}", f"{med(variant, 'solo', 'train_s'):.1f}",
                 f"{med(variant, 'solo', 'cpu_s'):.0f}"]
        for scenario in ("pair", "batch"):
            wall = med(variant, scenario, "wall_s")
            cells += [f"{wall:.1f} ({wall / solo:.2f}x)", f"{med(variant, scenario, 'train_s'):.1f}",
                      f"{med(variant, scenario, 'cpu_s'):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")

    def ratio(variant, scenario, key):
        return med(variant, scenario, key) / med(variant, "solo", key)

    lines += ["", f"Two sorts started together took {ratio('before', 'pair', 'wall_s'):.2f}x the wall time of one "
              f"alone before the fix and {ratio('after', 'pair', 'wall_s'):.2f}x after (the aim: at most 2.5x; "
              f"sharing two cores fairly costs 2x); they burnt {ratio('before', 'pair', 'cpu_s'):.1f}x the CPU "
              f"seconds of one sort before and {ratio('after', 'pair', 'cpu_s'):.1f}x after (2x would mean no CPU "
              f"time lost to waiting). `batch -j 2`: {ratio('before', 'batch', 'wall_s'):.2f}x before, "
              f"{ratio('after', 'batch', 'wall_s'):.2f}x after."]
    lines += ["", "Every run, in the order run (load average 1/5/15 min before it; CPU s of all its processes):", "",
              "| repeat | scenario | code | wall s | train s | CPU s | load before |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['repeat']} | {r['scenario']} | {r['variant']} | {r['wall_s']:.1f} | {r['train_s']:.1f} | "
              f"{r['cpu_s']:.0f} | {r['load_before']} |" for r in runs]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help="commit to compare with (default: the parent of the commit adding "
                                     f"{FIX_FILE})")
    ap.add_argument("--after", default="HEAD", help="commit with the fix (default: HEAD; uncommitted changes are "
                                                    "not measured)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of the demo tetrode")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a sort parameter for every run (as crsae-sort --set); repeatable")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    ap.add_argument("--from-run", type=Path, metavar="WORKDIR",
                    help="only rewrite the tables from the run saved in WORKDIR/run.json")
    args = ap.parse_args()
    if args.from_run:
        return publish(args.from_run, args.no_doc)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="crsae_contention_"))
    trees = {"before": work / "before", "after": work / "after"}
    shas = {"before": export_tree(args.before or before_commit(), trees["before"]),
            "after": export_tree(args.after, trees["after"])}
    rec = make_recording(work / "rec", args.duration)
    from crsae_sort.runlog import cpu_name
    from crsae_sort.threads import usable_cpus

    started, load_start = time.perf_counter(), load()
    runs = []
    for repeat in range(1, args.repeats + 1):
        for scenario in SCENARIOS:
            order = ("before", "after") if repeat % 2 else ("after", "before")
            for variant in order:
                row = run_scenario(scenario, trees[variant], rec, work / "runs",
                                   [x for kv in args.sets for x in ("--set", kv)])
                runs.append(dict(row, repeat=repeat, scenario=scenario, variant=variant))
                emit(f"repeat {repeat} {scenario:5s} {variant:6s} wall {row['wall_s']:6.1f} s  train "
                     f"{row['train_s']:6.1f} s  cpu {row['cpu_s']:6.0f} s  load {row['load_before']}")
    minutes = (time.perf_counter() - started) / 60
    settings = f"`{' '.join('--set ' + kv for kv in args.sets)}`" if args.sets else "default parameters"
    header = (f"Hardware: {cpu_name()}, {os.cpu_count()} cores ({usable_cpus()} usable by this process), "
              f"torch CPU. Load average (1/5/15 min) {load_start} at the start, {load()} at the end (on a shared "
              f"machine every number is relative to its neighbour in the same repeat). Recording: the demo "
              f"tetrode (`crsae_sort.demo.ground_truth_tetrode({args.duration:g})`, 6 units, 30 kHz) saved as a "
              f"binary folder; `--device cpu` and {settings}. Each sort is a fresh `python -m crsae_sort` process "
              f"(wall includes its start); two sorts together = two `sort` processes started at once, wall until "
              f"the later ends; `batch -j 2` = `crsae-sort batch` of the same two recordings with `--engine "
              f"processpoolexecutor -j 2`. CPU s = user + system seconds of all the processes of a run. Medians "
              f"of {args.repeats} repeats, before and after alternating; {minutes:.1f} min in all. Command: "
              f"`python scripts/benchmark_contention.py {' '.join(sys.argv[1:])}`.")
    (work / "run.json").write_text(json.dumps(dict(header=header, shas=shas, runs=runs), indent=1))
    publish(work, args.no_doc)


def publish(work: Path, no_doc: bool) -> None:
    """Print the tables of the run saved in ``work/run.json`` and write them into the docs."""
    saved = json.loads((work / "run.json").read_text())
    text = table(saved["runs"], saved["shas"], saved["header"])
    emit(text)
    if not no_doc:
        from .docs import write_block

        write_block(DOC, "CONTENTION", text)


if __name__ == "__main__":
    main()
