"""What a new user reads: unexpected failures say what was being done, where the traceback is, and -v
prints it; near-miss parameter names get a suggestion; each interface names its own options; a
missing parent of -o is created; no SpikeInterface FutureWarning; progress lines without a terminal."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from crsae_sort import InputError, sort
from crsae_sort.cli import main
from crsae_sort.io.reading import open_recording

ROOT = Path(__file__).resolve().parents[1]
FAST = {"max_epochs": 0, "device": "cpu"}  # the initial dictionary, no training: seconds


def _cli(args, cwd):
    """``python -m crsae_sort ARGS`` with warnings shown as a user's shell shows them."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "crsae_sort", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _raw_tetrode(path: Path) -> list:
    rng = np.random.default_rng(3)
    (rng.standard_normal((30000, 4)) * 50).astype("<i2").tofile(path)
    return [path, "--sampling-frequency", "30000", "--num-channels", "4", "--dtype", "int16", "--gain-to-uv",
            "0.195", "--probe", "tetrode"]


FAULT = """
import sys
import crsae_sort.io.reading as reading

def broken(*args, **kwargs):
    raise RuntimeError("simulated fault in the reader")

reading.open_recording = broken
from crsae_sort.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_unexpected_error_says_what_and_where_and_v_prints_the_traceback(tmp_path, verbose):
    raw = tmp_path / "x.raw"
    np.zeros((1000, 4), np.int16).tofile(raw)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", FAULT, "sort", str(raw), "-o", str(out)] + ["-v"] * verbose,
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    log = out.parent / "out.crsae_sort-failed.log"
    error = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert error == [f"Error: while opening {raw}: RuntimeError: simulated fault in the reader; "
                     + (f"the traceback is above and in {log}" if verbose else
                        f"the traceback is in {log}; rerun with -v to print it")], proc.stderr
    assert ("Traceback (most recent call last)" in proc.stderr) == verbose
    written = log.read_text()
    assert "crsae-sort failed while opening" in written and "in broken\nRuntimeError: simulated fault" in written
    assert not out.exists()


def test_json_that_is_not_a_recording_description(tmp_path):
    bad = tmp_path / "settings.json"
    bad.write_text('{"n_iterations": 30}')
    res = CliRunner().invoke(main, ["sort", str(bad), "-o", str(tmp_path / "out")])
    assert res.exit_code == 1
    assert res.output.strip() == (f"Error: {bad} is JSON but not a SpikeInterface recording description (it lacks "
                                  "class, module and kwargs); pass a file written by recording.dump_to_json(...), "
                                  "the folder of recording.save(...), or the raw data itself")


def test_near_miss_parameter_gets_a_suggestion(tmp_path):
    res = CliRunner().invoke(main, ["sort", str(tmp_path), "-o", str(tmp_path / "out"), "--set", "n_iteration=30"])
    assert res.exit_code == 1
    assert "unknown parameter(s) n_iteration (did you mean n_iterations?)" in res.output
    with pytest.raises(InputError, match=r"lamda_scale \(did you mean lambda_scale\?\), zzz;"):
        sort(None, None, {"lamda_scale": 1.0, "zzz": 1})


def test_cli_names_cli_options_and_no_future_warning_reaches_stderr(tmp_path):
    (tmp_path / "out").mkdir()
    proc = _cli(["sort", *_raw_tetrode(tmp_path / "x.raw"), "-o", tmp_path / "out"], cwd=tmp_path)
    assert proc.returncode == 1
    assert f"output folder {tmp_path / 'out'} exists; pass --overwrite or choose another" in proc.stderr
    assert "overwrite=True" not in proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr  # the probe was attached without a FutureWarning


def test_api_names_python_arguments(tmp_path):
    recording = open_recording(_raw_tetrode(tmp_path / "x.raw")[0], sampling_frequency_hz=30000, num_channels=4,
                               dtype="int16", gain_to_uv=0.195, probe="tetrode")
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError) as err:
        sort(recording, tmp_path / "out", FAST)
    assert str(err.value) == f"output folder {tmp_path / 'out'} exists; pass overwrite=True or choose another"
    with pytest.raises(InputError, match=r"pass probe='tetrode' \(the shipped probe with 4 contacts, one per "
                                         r"channel\) or probe='my_probe.json'"):
        open_recording(tmp_path / "x.raw", sampling_frequency_hz=30000, num_channels=4, dtype="int16")


def test_missing_parents_of_the_output_are_created(saved_tetrode_10s, tmp_path, monkeypatch):
    import crsae_sort.io.outfolder as outfolder

    moves = []
    real_commit = outfolder.commit
    monkeypatch.setattr(outfolder, "commit", lambda partial, target: (moves.append((partial, target)),
                                                                      real_commit(partial, target)))
    target = tmp_path / "not" / "yet" / "out"
    recording = open_recording(saved_tetrode_10s).frame_slice(0, 90000)  # 3 s
    result = sort(recording, target, FAST, progress=False)
    assert result.output_folder == target and (target / "summary.json").is_file()
    assert moves == [(tmp_path / "not" / "yet" / ".out.partial", target)]  # still through the hidden folder
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match=f"{blocker} is a file"):
        sort(recording, blocker / "out", FAST, progress=False)


def test_demo_without_a_terminal_logs_its_stages(tmp_path, monkeypatch):
    import crsae_sort.pipeline as pipeline

    real = pipeline.sort
    monkeypatch.setattr(pipeline, "sort", lambda rec, out, params, **kw: real(rec, out, dict(params, **FAST), **kw))
    res = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "demo"), "--device", "cpu", "--duration", "3"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("INFO ")]
    assert lines[0] == "INFO demo: generating a 3-s ground-truth tetrode (seed 2205)"
    assert lines[1] == f"INFO demo: sorting it into {tmp_path / 'demo'}"
    stages = [line.split()[2].rstrip(":") for line in lines if line.startswith("INFO stage ")]
    assert stages == ["preprocess", "init", "train", "grow", "inference", "curate", "export"]
    assert lines[-2].startswith("INFO demo: scoring") and lines[-1].startswith("INFO demo: mean accuracy")
    assert "versions" not in res.output  # only the progress lines, not the whole run log
