"""Where benchmark results go: a table between markers of ``docs/benchmarks.md``, the hardware line
and commit that head it, and the one writer of a benchmark's lines to stdout (:func:`emit`).

The benchmarks run from a source checkout; their outputs are the repository's ``docs/``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (and the folder that holds crsae_sort)
DOCS = ROOT / "docs"
DOC = DOCS / "benchmarks.md"


def write_block(doc: Path, marker: str, text: str, *, section: str | None = None) -> None:
    """Replace the text between ``<!-- MARKER:START -->`` and ``<!-- MARKER:END -->`` in ``doc``.

    Where ``doc`` has no such block: with ``section`` (a heading and its introduction), append
    it and an empty block at the end of ``doc`` first; without, stop and say where to add one.
    """
    if not doc.exists():
        raise SystemExit(f"{doc} not found: benchmarks write into the docs/ of a source checkout "
                         "(run them from the repository, or pass --no-doc)")
    content = doc.read_text()
    start, end = f"<!-- {marker}:START -->", f"<!-- {marker}:END -->"
    if start not in content or end not in content:
        if section is None:
            raise SystemExit(f"{doc} has no {start} ... {end} block; add one where the table belongs")
        content = content.rstrip("\n") + f"\n\n{section}\n\n{start}\n{end}\n"
    head, rest = content.split(start, 1)
    doc.write_text(f"{head}{start}\n{text}\n{end}{rest.split(end, 1)[1]}")


def hardware() -> str:
    """CPU model, cores, torch version and its threads, e.g. 'AMD EPYC, 2 cores, torch 2.3 (2 threads), CPU'."""
    import torch

    from ..runlog import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), CPU"


def emit(text: str, flush: bool = True) -> None:
    """A line of a benchmark's product (its progress, its table, a child's result) on stdout."""
    sys.stdout.write(text + "\n")
    if flush:
        sys.stdout.flush()


def read_rows(path: Path, duration_s: float) -> list[dict]:
    """The rows (one JSON object per line) an earlier run of a benchmark appended to ``path`` for recordings
    of ``duration_s``, so that a stopped or extended run sorts only what is missing. Code changed between
    the runs is not detected: resume only with the same checkout."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("duration_s") == duration_s]


def commit(ref: str = "HEAD") -> str | None:
    """The short commit ``ref`` names in this source tree, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
