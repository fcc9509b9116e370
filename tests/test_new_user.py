"""What a new user trips on (issue 24): the demo run twice, probe hints that fit the recording, a probe
name's near miss, integer data of unknown gain, -v before the command, SpikeInterface's own progress
bars, and the one import of the package root that was left."""
import ast
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from crsae_sort import InputError
from crsae_sort.cli import main
from crsae_sort.io.reading import open_recording

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--device", "cpu", "--set", "max_epochs=0", "--set", "grow_rounds=0"]  # no training, no growth: seconds
GAIN = 0.195  # µV per step of the int16 file below


@pytest.fixture(scope="module")
def counts_tetrode(tmp_path_factory) -> list:
    """3 s of a seeded ground-truth tetrode written as raw int16 counts (µV / 0.195), and the options
    `sort` needs for it, gain left out."""
    from crsae_sort.demo import ground_truth_tetrode

    recording, _ = ground_truth_tetrode(3.0, seed=11, num_units=3)
    path = tmp_path_factory.mktemp("raw") / "tetrode_counts.raw"
    np.round(recording.get_traces() / GAIN).astype("<i2").tofile(path)
    return [str(path), "--sampling-frequency", "30000", "--num-channels", "4", "--dtype", "int16",
            "--probe", "tetrode"]


def _without_probe(folder: Path, n_channels: int) -> Path:
    from spikeinterface.core import NumpyRecording

    traces = np.random.default_rng(n_channels).standard_normal((3000, n_channels)).astype("float32")
    NumpyRecording([traces], 30000.0).save(folder=folder, n_jobs=1, progress_bar=False)
    return folder


def test_demo_runs_twice_into_its_folder_and_never_replaces_one_it_did_not_write(tmp_path, monkeypatch):
    import crsae_sort.pipeline as pipeline

    real = pipeline.sort
    fast = {"max_epochs": 0, "grow_rounds": 0, "device": "cpu"}
    monkeypatch.setattr(pipeline, "sort", lambda rec, out, params, **kw: real(rec, out, dict(params or {}, **fast),
                                                                               **kw))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    first = runner.invoke(main, ["demo", "--duration", "3"])  # the README's line, into ./crsae_demo
    assert first.exit_code == 0, first.output
    demo = tmp_path / "crsae_demo"
    assert json.loads((demo / "demo.json").read_text())["seed"] == 2205
    (demo / "left_by_the_first_run").write_text("")
    second = runner.invoke(main, ["demo", "--duration", "3"])
    assert second.exit_code == 0, second.output
    assert (demo / "summary.json").is_file() and not (demo / "left_by_the_first_run").exists()
    assert first.output.splitlines()[-1].split(";")[0] == second.output.splitlines()[-1].split(";")[0]  # same seed
    # a folder the demo did not write stays untouched, and nothing is generated first
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.txt").write_text("keep")
    res = runner.invoke(main, ["demo", "-o", str(mine), "--duration", "3"])
    assert res.exit_code == 1
    assert res.output.strip() == (f"Error: output folder {mine} exists and is not an earlier demo's output; pass "
                                  "--overwrite to replace it, or choose another folder")
    assert (mine / "data.txt").read_text() == "keep" and sorted(p.name for p in mine.iterdir()) == ["data.txt"]


def test_missing_probe_suggests_the_shipped_probes_that_fit(tmp_path):
    rec16 = _without_probe(tmp_path / "rec16", 16)
    res = CliRunner().invoke(main, ["sort", str(rec16), "-o", str(tmp_path / "out")])
    assert res.exit_code == 1 and not (tmp_path / "out").exists()
    assert res.output.strip() == ("Error: recording has no probe attached: pass --probe linear16 (the shipped probe "
                                  "with 16 contacts, one per channel) or --probe my_probe.json (any probeinterface "
                                  "file with 16 contacts)")
    with pytest.raises(InputError, match=r"pass probe='buzsaki32' or probe='linear32' \(the shipped probes with 32 "
                                         r"contacts, one per channel: check which is yours\)"):
        open_recording(_without_probe(tmp_path / "rec32", 32))
    with pytest.raises(InputError) as err:
        open_recording(_without_probe(tmp_path / "rec7", 7))
    assert str(err.value) == ("recording has no probe attached, and no probe shipped with crsae-sort has its 7 "
                              "channels (they have 1, 4, 16, 32 or 384 contacts): pass probe='my_probe.json', a "
                              "probeinterface file with 7 contacts")
    # the probe that cannot fit: the one that does is named
    res = CliRunner().invoke(main, ["sort", str(rec16), "-o", str(tmp_path / "out"), "--probe", "tetrode"])
    assert res.exit_code == 1
    assert res.output.strip() == ("Error: probe tetrode.json has 4 contacts but the recording has 16 channels; "
                                  "choose a probe that matches (shipped with 16 contacts: linear16)")
    assert open_recording(rec16, probe="linear16").get_probe().get_contact_count() == 16


def test_probe_name_typo_gets_did_you_mean(tmp_path):
    rec4 = _without_probe(tmp_path / "rec4", 4)
    res = CliRunner().invoke(main, ["sort", str(rec4), "-o", str(tmp_path / "out"), "--probe", "tetrod"])
    assert res.exit_code == 1
    assert res.output.strip() == ("Error: probe tetrod (did you mean tetrode?) is neither a file nor a probe shipped "
                                  "with crsae-sort (known: buzsaki32, linear16, linear32, neuropixels1, neuropixels2, "
                                  "single, tetrode)")
    with pytest.raises(InputError, match=r"^probe zzz is neither"):  # nothing close: no guess
        open_recording(rec4, probe="zzz")


def _export_like_phy(result, recording, folder):
    """Stands in for the Phy export (tens of seconds on a loaded CPU): a SpikeInterface call that takes its job
    settings from SpikeInterface's globals, as the export's templates step did when it drew `estimate_templates
    (no parallelization)` into the CLI output; this one draws `write_memory (no parallelization)` unless quiet."""
    recording.save(format="memory")
    Path(folder).mkdir()


@pytest.fixture(scope="module")
def sorted_in_uv(counts_tetrode, tmp_path_factory):
    """The int16 tetrode sorted with its gain, -v given before the command, with --phy (the stand-in above);
    SpikeInterface's job settings before the run; what the stand-in draws outside a sort."""
    import contextlib
    import io

    from spikeinterface.core import get_global_job_kwargs

    import crsae_sort.io.phy_nwb as phy_nwb

    before = get_global_job_kwargs()
    drawn = io.StringIO()
    with contextlib.redirect_stderr(drawn):  # outside a sort
        _export_like_phy(None, open_recording(counts_tetrode[0], sampling_frequency_hz=30000, num_channels=4,
                                              dtype="int16", probe="tetrode"), tmp_path_factory.mktemp("bare") / "phy")
    out = tmp_path_factory.mktemp("uv") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(phy_nwb, "export_phy", _export_like_phy)
        res = CliRunner().invoke(main, ["-v", "sort", *counts_tetrode, "-o", str(out), "--gain-to-uv", str(GAIN),
                                        "--phy", *FAST])
    return res, out, before, drawn.getvalue()


def test_integer_data_of_unknown_gain_sorts_in_counts_on_purpose(counts_tetrode, sorted_in_uv, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["sort", *counts_tetrode, "-o", str(tmp_path / "none"), *FAST])
    assert res.exit_code == 1 and not (tmp_path / "none").exists()
    assert res.output.strip() == ("Error: integer recording without a gain to µV; any gain finds the same spikes "
                                  "(only the µV values of templates and amplitudes change): pass --gain-to-uv G if "
                                  "you know it (µV per step, e.g. 0.195 for Intan), or --counts to sort in the "
                                  "file's own units (results in counts, not µV)")
    both = runner.invoke(main, ["sort", *counts_tetrode, "-o", str(tmp_path / "both"), "--counts",
                                "--gain-to-uv", str(GAIN), *FAST])
    assert both.exit_code == 1 and "pass one" in both.output
    uv, uv_folder, _, _ = sorted_in_uv
    counts = runner.invoke(main, ["sort", *counts_tetrode, "-o", str(tmp_path / "counts"), "--counts", *FAST])
    assert uv.exit_code == 0 and counts.exit_code == 0, uv.output + counts.output
    assert counts.output.strip().splitlines()[-1] == (f"results in {tmp_path / 'counts'}; templates and amplitudes "
                                                      "in counts, not µV")
    a, b = np.load(uv_folder / "spikes.npy"), np.load(tmp_path / "counts" / "spikes.npy")
    assert len(a) > 100
    np.testing.assert_array_equal(a["sample_index"], b["sample_index"])  # the gain changes no spike
    np.testing.assert_array_equal(a["unit_id"], b["unit_id"])
    np.testing.assert_allclose(a["amplitude_uv"], GAIN * b["amplitude_uv"], rtol=1e-4)
    t_uv, t_counts = np.load(uv_folder / "templates.npy"), np.load(tmp_path / "counts" / "templates.npy")
    np.testing.assert_allclose(t_uv, GAIN * t_counts, rtol=1e-4, atol=1e-4 * np.abs(t_uv).max())
    assert json.loads((uv_folder / "summary.json").read_text())["amplitude_unit"] == "uV"
    assert json.loads((tmp_path / "counts" / "summary.json").read_text())["amplitude_unit"] == "counts"
    assert json.loads((tmp_path / "counts" / "params.json").read_text())["amplitude_unit"] == "counts"


def test_gain_to_uv_applies_to_any_input_that_stores_no_gain(tmp_path):
    """The message's --gain-to-uv works beyond raw binary: here a SpikeInterface folder of int16 samples."""
    from spikeinterface.core import NumpyRecording

    NumpyRecording([np.arange(12000, dtype="int16").reshape(3000, 4)], 30000.0).save(
        folder=tmp_path / "int16", n_jobs=1, progress_bar=False)
    recording = open_recording(tmp_path / "int16", probe="tetrode", gain_to_uv=GAIN)
    assert recording.has_scaleable_traces()
    np.testing.assert_allclose(recording.get_traces(end_frame=2, return_in_uV=True),
                               np.arange(8).reshape(2, 4) * np.float32(GAIN), rtol=1e-6)
    assert not open_recording(tmp_path / "int16", probe="tetrode").has_scaleable_traces()


def test_v_before_the_command_and_no_spikeinterface_progress_bars(sorted_in_uv):
    from spikeinterface.core import get_global_job_kwargs

    res, out, before, drawn_outside = sorted_in_uv
    assert res.exit_code == 0, res.output
    assert "INFO parameters {" in res.output  # -v before the command logs every INFO line, as after it
    assert "write_memory (no parallelization)" in drawn_outside and (out / "phy").is_dir()
    assert "no parallelization" not in res.output and "it/s" not in res.output and "%|" not in res.output
    assert get_global_job_kwargs() == before  # SpikeInterface's settings are put back after the sort


def test_bench_init_takes_sort_from_pipeline():
    tree = ast.parse((ROOT / "crsae_sort" / "bench" / "init.py").read_text())
    from_root = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "crsae_sort"
                 for a in node.names]
    modules = {p.stem for p in (ROOT / "crsae_sort").iterdir()}
    assert from_root and all(name in modules for name in from_root), from_root  # modules only, no names
