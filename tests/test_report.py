"""The HTML report: built after a short sort run as a subprocess (stderr not a terminal), every figure
a real image linked from the page, the `report` command's fallback and errors, progress bars only on
a terminal, and a headless-Chromium screenshot when Chromium is installed."""
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from crsae_sort.cli import main

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("max_epochs=1", "n_windows=48", "batch_size=16", "eval_every=1", "n_iterations=30", "num_threads=1")
FAST = ["--device", "cpu", "--seed", "0"] + [arg for kv in SETTINGS for arg in ("--set", kv)]


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """10 s of the demo tetrode saved to a folder, sorted with --report --ground-truth by `python -m crsae_sort`."""
    from crsae_sort.demo import ground_truth_tetrode

    base = tmp_path_factory.mktemp("report")
    recording, gt_sorting = ground_truth_tetrode(10.0)
    with warnings.catch_warnings():  # generated data has no provenance to save
        warnings.simplefilter("ignore")
        recording.save(folder=base / "rec", n_jobs=1, progress_bar=False)
        gt_sorting.save(folder=base / "gt")
    out = base / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "crsae_sort", "sort", str(base / "rec"), "-o", str(out), *FAST,
                           "--report", "--ground-truth", str(base / "gt"), "-v"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base, out, proc


def _check_report(folder: Path, *, ground_truth: bool) -> str:
    from PIL import Image

    page = folder / "report" / "index.html"
    text = page.read_text(encoding="utf-8")
    units = [u["unit_id"] for u in json.loads((folder / "summary.json").read_text())["units"]]
    expected = {"timing.png", "dictionary.png", "fit.png", "training.png"} | {f"unit_{u}.png" for u in units}
    if ground_truth:
        expected.add("ground_truth.png")
    on_disk = {p.name for p in page.parent.glob("*.png")}
    linked = set(re.findall(r'<img src="([^"]+)"', text))
    assert on_disk == expected and linked == expected, (on_disk, linked)
    for name in expected:
        with Image.open(page.parent / name) as im:
            im.verify()
        with Image.open(page.parent / name) as im:
            pixels = np.asarray(im.convert("L"), dtype=float)
        assert min(pixels.shape) >= 200, name
        assert (pixels < 200).mean() > 0.005, f"{name} is blank"
    assert "http://" not in text and "https://" not in text  # self-contained: no CDN, no remote images
    return text


def test_report_has_every_figure_linked_metrics_and_ground_truth(reported):
    base, out, proc = reported
    assert f"report: {out / 'report' / 'index.html'}" in proc.stdout
    text = _check_report(out, ground_truth=True)
    for column in ("label", "snr", "isi_violations_ratio", "presence_ratio", "amplitude_cutoff", "λ"):
        assert f"<th>{column}</th>" in text
    assert "presence ratio in 1-s bins: a tenth of the recording rounded down" in text  # 10 s recording
    labels = [u["quality"] for u in json.loads((out / "summary.json").read_text())["units"]]
    assert all(f"<td>{label}</td>" in text for label in labels)
    assert '<table class="sortable">' in text and "<script>" in text
    assert 'id="ground-truth"' in text and "<th>accuracy</th>" in text


def test_report_shows_plain_ids_and_a_one_line_recording(reported):
    _, out, _ = reported
    text = (out / "report" / "index.html").read_text(encoding="utf-8")
    cell = re.search(r"<tr><td>recording</td><td>(.*?)</td></tr>", text, re.S).group(1)
    # the format and the folder the traces come from, not the class of the view the probe was attached to
    assert cell == f"BinaryFolder ({out.parent / 'rec'}): 4 channels at 30000 Hz, 10.0 s in 1 segment, float32"
    assert "np.int64" not in text and "np.float" not in text


def test_no_unit_is_drawn_grey_and_the_dictionary_stacks_channels_as_the_probe():
    """Grey means "too few spikes": no unit colour is grey. The dictionary stacks channels as the unit figures
    place them (larger y higher; channel 0 of a linear probe at the bottom), else channel 0 at the top."""
    from matplotlib.colors import to_rgb

    from crsae_sort.report.figures import _stack_rows, unit_color

    for c in range(40):
        r, g, b = to_rgb(unit_color(c))
        assert max(r, g, b) - min(r, g, b) > 0.1, (c, (r, g, b))
    linear = np.stack([np.zeros(4), np.arange(4) * 20.0], axis=1)
    assert _stack_rows(4, linear).tolist() == [3, 2, 1, 0]
    assert _stack_rows(4, None).tolist() == [0, 1, 2, 3]


def test_numpy_scalars_in_notes_become_plain_values():
    import numpy as np

    from crsae_sort.report import plain_ids

    note = f"Amplitude cutoff set to NaN for units {[np.int64(0), np.int64(12)]}: too few spikes (< {np.float64(30.0)})."
    assert plain_ids(note) == "Amplitude cutoff set to NaN for units [0, 12]: too few spikes (< 30.0)."
    assert plain_ids(f"units {[np.str_('a'), np.uint8(3)]}") == "units ['a', 3]"


def test_sort_without_a_terminal_logs_one_line_per_stage_and_no_progress_bars(reported):
    _, out, proc = reported
    assert "INFO stage train:" in proc.stderr  # -v logs to the terminal ...
    for bar in ("it/s", "%|", "\r", "batch/s", "chunk/s"):  # ... but draws no tqdm/SpikeInterface bars
        assert bar not in proc.stderr, bar
    log = (out / "crsae_sort.log").read_text()
    for stage in ("preprocess", "init", "train", "inference", "export"):
        assert len(re.findall(rf"stage {stage}: [0-9.]+ s", log)) == 1, stage


def test_report_command_falls_back_to_recording_option_and_explains_errors(reported, tmp_path):
    base, out, _ = reported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("report", "recording.json"))
    runner = CliRunner()
    res = runner.invoke(main, ["report", str(copy)])
    assert res.exit_code != 0 and "--recording" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["report", str(tmp_path / "missing")])
    assert res.exit_code != 0 and "does not exist" in res.output
    res = runner.invoke(main, ["report", str(base / "rec")])
    assert res.exit_code != 0 and "not a crsae-sort output folder" in res.output
    res = runner.invoke(main, ["report", str(copy), "--recording", str(base / "rec")])
    assert res.exit_code == 0, res.output
    _check_report(copy, ground_truth=False)


@pytest.mark.parametrize("progress", [True, False])
def test_training_bar_with_eta_only_when_asked(progress, capsys):
    import torch

    from crsae_sort.model.crsae import CRsAE
    from crsae_sort.params import TrainParams
    from crsae_sort.train import train

    d = torch.randn(2, 2, 8)
    model = CRsAE(d / d.flatten(1).norm(dim=1).view(-1, 1, 1), torch.full((2,), 1.0), 5)
    windows = np.random.default_rng(0).normal(size=(10, 2, 40)).astype(np.float32)  # 2 batches of 4
    train(model, windows, TrainParams(batch_size=4, max_epochs=1), lambda_prior_strength=1.0, seed=0,
          progress=progress)
    err = capsys.readouterr().err
    if progress:
        assert "training" in err and "<" in err  # tqdm's [elapsed<remaining] ETA
    else:
        assert err == ""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(reported, tmp_path):
    from PIL import Image

    _, out, _ = reported
    shot = tmp_path / "report.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1400,3000",
                    (out / "report" / "index.html").as_uri()], capture_output=True, timeout=120, check=True)
    with Image.open(shot) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=int)
    assert rgb.shape[:2] == (3000, 1400)
    colourful = (rgb.max(axis=2) - rgb.min(axis=2)) > 60  # figure lines and bars, not just black text
    assert colourful.mean() > 0.005
    assert (rgb.sum(axis=2) < 300).mean() > 0.01  # text and axes were drawn
    if os.environ.get("CRSAE_SCREENSHOT"):
        shutil.copy(shot, os.environ["CRSAE_SCREENSHOT"])
