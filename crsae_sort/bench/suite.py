"""Regenerate every benchmark in docs/benchmarks.md with one command.

    python scripts/benchmarks.py            # quick: a few minutes on a 2-core machine
    python scripts/benchmarks.py --full     # everything at full size (about an hour on 2 cores)

Quick runs the convex-solver comparison (plan `quick`), the sorter comparison (quick cases),
the two real clips and the encoder micro-benchmark. Full runs the convex plan `full`, the sorter
comparison `--full`, the real clips, the encoder, sorts sharing the CPU (before and after the thread fix), and the end-to-end speed (`--full`) and
memory tables. Each part is its own script (run them alone to redo one table); this only
chains them, one after another and each in its own process, because parts running side by side
on a small machine slow each other down.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .docs import DOC, DOCS, emit, write_block


def convex(plan: str, workdir: Path, device: str = "cpu") -> None:
    """`crsae-sort bench convex` into docs: table, JSON and the cost/memory figure."""
    from .convex import describe, headline, plot, run, table

    rows = run(workdir / "convex", plan, device=device)
    figure = DOCS / "img" / "convex_cost_memory.png"
    plot(rows, figure)
    (DOCS / "benchmarks_convex.json").write_text(json.dumps(dict(plan=plan, rows=rows), indent=1))
    command = "python scripts/benchmarks.py" + (" --full" if plan == "full" else "") + f" --device {device}" + \
        f"  (or: crsae-sort bench convex --plan {plan} --device {device})"
    write_block(DOC, "CONVEX", "\n".join([f"`{command}`", "", describe(plan, device), "", headline(rows), "",
                                       table(rows), "", "![cost and memory against length](img/convex_cost_memory.png)"]))


def part(module: str, *args: str) -> None:
    """``python -m crsae_sort.bench.<module> ARGS`` in its own process (the same as scripts/benchmark_<module>.py)."""
    cmd = [sys.executable, "-m", f"crsae_sort.bench.{module}", *args]
    emit("$ " + " ".join(cmd[1:]))
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="full sizes (about an hour on 2 cores)")
    ap.add_argument("--skip", action="append", default=[], choices=["convex", "sorters", "real", "encoder", "speed", "contention"],
                    help="leave one part's table as it is; repeatable")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--device", default="cpu", help="where the CRsAE encoder runs in the convex comparison")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("crsae_sort.bench.convex").setLevel(logging.INFO)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="crsae_benchmarks_"))
    t0 = time.perf_counter()
    if "convex" not in args.skip:
        emit("$ convex-solver comparison")
        convex("full" if args.full else "quick", work, args.device)
    if "sorters" not in args.skip:
        part("sorters", *(["--full"] if args.full else []), "--workdir", str(work / "sorters"))
    if "real" not in args.skip:
        part("real")
    if "encoder" not in args.skip:
        part("encoder")
    if args.full and "speed" not in args.skip:
        part("speed", "--full", "--workdir", str(work / "speed"))
        part("speed", "--memory", "--workdir", str(work / "speed"))
    if args.full and "contention" not in args.skip:
        part("contention", "--repeats", "3", "--workdir", str(work / "contention"))
    emit(f"done in {time.perf_counter() - t0:.0f} s; tables in {DOC}")


if __name__ == "__main__":
    main()
