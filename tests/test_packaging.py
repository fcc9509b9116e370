"""The probes travel inside the built package and are found through importlib.resources, not beside
the source tree (.ci/wheel_check.sh installs the wheel in a fresh venv and sorts with it)."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBES = sorted(p.stem for p in (ROOT / "crsae_sort" / "probes").glob("*.json"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the sources (the checkout's build/ stays untouched)."""
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("crsae_sort",):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(src)], check=True, capture_output=True, timeout=300)
    return next(dist.glob("crsae_sort-*.whl"))


def test_the_wheel_carries_every_probe(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert len(PROBES) == 7 and "tetrode" in PROBES
    assert sorted(n[len("crsae_sort/probes/"):-5] for n in names if n.startswith("crsae_sort/probes/")) == PROBES
    assert not [n for n in names if n.startswith("probes/")]  # nothing at the top of site-packages


def test_probes_are_found_through_importlib_resources_in_the_installed_package(wheel, tmp_path):
    # the wheel itself on sys.path (zipimport): no source tree, no files on disk to fall back on
    code = f"""
import sys
sys.path.insert(0, {str(wheel)!r})
import crsae_sort
from crsae_sort.io import reading
assert crsae_sort.__file__.startswith({str(wheel)!r}), crsae_sort.__file__
shipped = reading._shipped_probes()
assert str(shipped["tetrode"]).startswith({str(wheel)!r}), shipped["tetrode"]
group = reading.load_probe("tetrode", 4)
print(",".join(reading.probe_names()), group.get_contact_count(), group.probes[0].contact_positions.tolist())
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    names, count, positions = out.stdout.split(" ", 2)
    assert names.split(",") == PROBES and count == "4"
    assert positions.strip() == "[[0.0, 0.0], [0.0, 20.0], [20.0, 0.0], [20.0, 20.0]]"


def test_help_lists_the_probes_and_points_at_nothing_an_install_lacks():
    from click.testing import CliRunner

    from crsae_sort.cli import main

    text = " ".join(CliRunner().invoke(main, ["sort", "--help"]).output.split())
    assert "a probe shipped with crsae-sort: " + ", ".join(PROBES) + "." in text
    bench = CliRunner().invoke(main, ["bench", "--help"]).output
    assert "docs/" not in bench and "Benchmarks section of the README" in " ".join(bench.split())
