"""Ship the repository's probes/ inside the package (crsae_sort/probes/), where
crsae_sort.io.reading finds them through importlib.resources once installed.

Everything else is in pyproject.toml. The probe files stay at the top level as their source
(scripts/make_probes.py writes them there); this build step copies them into the built package,
so a wheel, an sdist-built wheel and `pip install .` all carry them.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PROBES = Path(__file__).resolve().parent / "probes"


class build_py_with_probes(build_py):
    def run(self):
        super().run()
        files = sorted(PROBES.glob("*.json"))
        if not files:
            raise SystemExit(f"no probe files in {PROBES}: run python scripts/make_probes.py (or restore probes/)")
        target = Path(self.build_lib) / "crsae_sort" / "probes"
        self.mkpath(str(target))
        for f in files:
            self.copy_file(str(f), str(target / f.name))


setup(cmdclass={"build_py": build_py_with_probes})
