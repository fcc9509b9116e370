"""Every script in scripts/ is a command line that answers --help without doing any work, and
the benchmark modules behind them import neither torch nor SpikeInterface until they run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import crsae_sort

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))
# the scripts import this crsae_sort, not another installed copy
ENV = dict(os.environ, PYTHONWARNINGS="ignore",
           PYTHONPATH=os.pathsep.join([str(Path(crsae_sort.__file__).resolve().parents[1]),
                                       os.environ.get("PYTHONPATH", "")]))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_help(script):
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {script.name}")
    if script.name.startswith("benchmark"):  # thin entry points: the logic is in crsae_sort.bench
        assert "sys.path" not in script.read_text()


def test_benchmark_modules_import_light():
    code = ("import sys\n"
            "from crsae_sort.bench import ablation, encoder, hybrid, learning, locust, real, sorters, speed, suite\n"
            "print(sorted(m for m in ('torch', 'spikeinterface', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_speed_benchmark_child_sorts_and_reports(tmp_path, monkeypatch):
    """The speed benchmark's fresh-process sort (its CHILD) on a 5-s tetrode: it once read the sort's
    summary as a dict after it became a dataclass, and nothing ran it until a benchmark did."""
    from crsae_sort.bench.speed import make_recording, run_once

    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    rec, gt = make_recording(tmp_path, 5.0)
    row = run_once(rec, gt, tmp_path / "out")
    assert set(row["stages"]) >= {"preprocess", "init", "train", "inference", "export", "total"}
    assert row["accuracy"] > 0.8 and row["peak_mb"] > 0 and row["n_channels"] == 4 and row["decimation"] == 2


def test_every_benchmark_block_has_its_markers_in_the_doc():
    """Each table a benchmark writes (``bench.docs.write_block``) has one START and one END marker, in that
    order, in docs/benchmarks.md, so that editing the prose around them cannot orphan a script's table."""
    import re

    from crsae_sort.bench.docs import DOC

    text = DOC.read_text()
    written = set()
    for module in (ROOT / "crsae_sort" / "bench").glob("*.py"):
        written |= set(re.findall(r'write_block\(\s*DOC,\s*(?:MARKER|"(\w+)")', module.read_text())) - {""}
    written |= {"SORTERS", "SPEED", "MEMORY", "MEMORY_NP1"}  # a named constant, and speed.py's by mode and case
    assert {"ABLATION", "CONTENTION", "CONVEX", "ENCODER", "GPU", "REAL", "SWEEP", "WARMSTART"} <= written
    for marker in sorted(written):
        start, end = f"<!-- {marker}:START -->", f"<!-- {marker}:END -->"
        assert text.count(start) == 1 and text.count(end) == 1, marker
        assert text.index(start) < text.index(end), marker
