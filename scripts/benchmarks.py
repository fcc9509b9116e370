"""Regenerate every benchmark in docs/benchmarks.md with one command.

    python scripts/benchmarks.py            # quick: a few minutes on a 2-core machine
    python scripts/benchmarks.py --full     # everything at full size (about an hour on 2 cores)

Quick runs the convex-solver comparison (plan `quick`), the sorter comparison (quick cases),
the two real clips and the encoder micro-benchmark. Full runs the convex plan `full`, the sorter
comparison `--full`, the real clips, the encoder, the end-to-end speed (`--full`) and memory
tables, and sorts sharing the CPU (before and after the thread fix). Each part is its own script (run them alone to redo one table); this only
chains them, one after another, because parts running side by side on a small machine slow
each other down.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


def convex(plan: str, workdir: Path, device: str = "cpu") -> None:
    """`crsae-sort bench convex` into docs: table, JSON and the cost/memory figure."""
    sys.path.insert(0, str(ROOT))
    from crsae_sort.bench_convex import describe, headline, plot, run, table

    rows = run(workdir / "convex", plan, device=device)
    figure = ROOT / "docs" / "img" / "convex_cost_memory.png"
    plot(rows, figure)
    (ROOT / "docs" / "benchmarks_convex.json").write_text(json.dumps(dict(plan=plan, rows=rows), indent=1))
    command = "python scripts/benchmarks.py" + (" --full" if plan == "full" else "") + f" --device {device}" + \
        f"  (or: crsae-sort bench convex --plan {plan} --device {device})"
    from benchmark_speed import write_block  # scripts/ is on sys.path when a script runs

    write_block(DOC, "CONVEX", "\n".join([f"`{command}`", "", describe(plan, device), "", headline(rows), "", table(rows), "",
                                       "![cost and memory against length](img/convex_cost_memory.png)"]))


def script(name: str, *args: str) -> None:
    cmd = [sys.executable, str(ROOT / "scripts" / name), *args]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="full sizes (about an hour on 2 cores)")
    ap.add_argument("--skip", action="append", default=[], choices=["convex", "sorters", "real", "encoder", "speed", "contention"],
                    help="leave one part's table as it is; repeatable")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--device", default="cpu", help="where the CRsAE encoder runs in the convex comparison")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("crsae_sort.bench_convex").setLevel(logging.INFO)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="crsae_benchmarks_"))
    t0 = time.perf_counter()
    if "convex" not in args.skip:
        print("$ convex-solver comparison", flush=True)
        convex("full" if args.full else "quick", work, args.device)
    if "sorters" not in args.skip:
        script("benchmark_sorters.py", *(["--full"] if args.full else []), "--workdir", str(work / "sorters"))
    if "real" not in args.skip:
        script("benchmark_real.py")
    if "encoder" not in args.skip:
        script("benchmark_encoder.py")
    if args.full and "speed" not in args.skip:
        script("benchmark_speed.py", "--full", "--workdir", str(work / "speed"))
        script("benchmark_speed.py", "--memory", "--workdir", str(work / "speed"))
    if args.full and "contention" not in args.skip:
        script("benchmark_contention.py", "--repeats", "3", "--workdir", str(work / "contention"))
    print(f"done in {time.perf_counter() - t0:.0f} s; tables in {DOC}")


if __name__ == "__main__":
    main()
