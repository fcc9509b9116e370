"""crsae_sort.bench.sorters --tiny: a 3-s ground-truth tetrode sorted by crsae through run_sorter."""
import importlib.util
import json

import pytest

for module in ("spikeinterface.sorters", "spikeinterface.comparison", "spikeinterface.metrics", "probeinterface",
               "matplotlib"):
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        pytest.skip(f"benchmark_sorters needs {module}", allow_module_level=True)

from crsae_sort.bench import sorters  # noqa: E402  (after the skips above)
from crsae_sort.bench.docs import DOC  # noqa: E402
from crsae_sort.bench.sorters_report import DOC_PNG, case_markdown  # noqa: E402


def test_tiny_benchmark_scores_crsae_through_run_sorter(tmp_path):
    doc_before = DOC.read_text()
    report = sorters.main(["--tiny", "--no-doc", "--threads", "1", "--workdir", str(tmp_path)])

    saved = json.loads((tmp_path / "benchmarks_sorters.json").read_text())
    assert saved["mode"] == "tiny" and [c["case"] for c in saved["cases"]] == ["tetrode"]
    (case,) = saved["cases"]
    assert case["duration_s"] == 3.0 and len(case["snrs"]) == 6
    (row,) = case["results"]
    assert row["sorter"] == "crsae" and row["status"] == "ok", row.get("reason")
    # 5 of the 6 planted units have SNR >= 5; the sixth (SNR ~3) is not expected in 3 s
    assert row["accuracy"] > 0.8
    assert row["accuracy_snr5"] > 0.95
    assert row["well_detected"] >= 5 and row["false_positive"] <= 1
    assert 0 < row["wall_s"] < 120 and row["stages_s"]["total"] > 0
    assert set(row["units"]) == set(case["snrs"])

    table = "\n".join(case_markdown(case))
    assert f"| crsae | {row['version']} | {row['n_units']} | {row['accuracy']:.3f} |" in table
    assert (tmp_path / DOC_PNG.name).stat().st_size > 10_000
    assert report["cases"][0]["results"][0]["accuracy"] == row["accuracy"]
    assert DOC.read_text() == doc_before  # --no-doc leaves docs/ alone


def test_failed_sorter_gets_a_row_with_its_reason(tmp_path):
    res = sorters.run_sorter_in_child("no_such_sorter", tmp_path / "missing", tmp_path / "out", 1, 60)
    assert res["status"] == "failed" and "no_such_sorter" in res["reason"]
    case = dict(case="tetrode", duration_s=3.0, snrs={"0": 5.0}, results=[res])
    assert "| no_such_sorter | ? | failed: " in "\n".join(case_markdown(case))


def test_keep_others_merges_earlier_cases_marked_with_their_run():
    new = dict(command="python scripts/benchmark_sorters.py --cases 64ch", commit="abc1234", cases=[
        dict(case="64ch", duration_s=60.0, snrs={"0": 9.0}, results=[])])
    earlier = dict(command="python scripts/benchmark_sorters.py --full", commit=None, date="2026-11-25",
                   load_before=0.5, cases=[dict(case="tetrode", duration_s=60.0, snrs={"0": 9.0}, results=[]),
                                           dict(case="64ch", duration_s=60.0, snrs={"0": 1.0}, results=[])])
    merged = sorters.keep_other_cases(new, earlier)
    assert [c["case"] for c in merged["cases"]] == ["tetrode", "64ch"]   # the case order of CASES
    tetrode, dense = merged["cases"]
    assert dense["snrs"] == {"0": 9.0} and "kept_from" not in dense      # this run's case wins
    assert tetrode["kept_from"]["command"].endswith("--full")
    text = "\n".join(case_markdown(tetrode))
    assert "Not re-run" in text and "2026-11-25" in text and "--full" in text


def test_keep_others_keeps_an_earlier_case_this_run_could_not_generate():
    row = dict(sorter="crsae", status="failed", reason="timed out", version="1")
    earlier = dict(command="python scripts/benchmark_sorters.py --full", commit="0ld0000", cases=[
        dict(case="mearec_tetrode", duration_s=60.0, snrs={"0": 9.0}, results=[row])])
    new = dict(command="python scripts/benchmark_sorters.py --full", commit="n3w0000", cases=[
        dict(case="mearec_tetrode", duration_s=60.0, snrs={}, results=[], error="MEArec failed: hoc")])
    (case,) = sorters.keep_other_cases(new, earlier)["cases"]
    assert {k: v for k, v in case.items() if k not in ("kept_from", "not_rerun")} == earlier["cases"][0]
    assert case["kept_from"]["commit"] == "0ld0000" and case["not_rerun"] == "MEArec failed: hoc"
    text = "\n".join(case_markdown(case))
    assert "could not generate it: MEArec failed: hoc" in text and "0ld0000" in text and "| crsae | 1 | failed: timed out" in text


def test_keep_others_keeps_rows_of_sorters_this_run_left_out():
    row = dict(sorter="spykingcircus2", status="failed", reason="x", version="1")
    earlier = dict(command="python scripts/benchmark_sorters.py --cases 64ch", commit="0ld0000", cases=[
        dict(case="64ch", duration_s=60.0, snrs={}, results=[row, dict(row, sorter="crsae")])])
    new = dict(command="python scripts/benchmark_sorters.py --cases 64ch --sorters crsae", commit="n3w0000", cases=[
        dict(case="64ch", duration_s=60.0, snrs={}, results=[dict(row, sorter="crsae", version="2")])])
    (case,) = sorters.keep_other_cases(new, earlier)["cases"]
    assert [(r["sorter"], r["version"]) for r in case["results"]] == [("spykingcircus2", "1"), ("crsae", "2")]
    assert case["results"][0]["kept_from"]["commit"] == "0ld0000" and "kept_from" not in case["results"][1]
    text = "\n".join(case_markdown(case))
    assert "| spykingcircus2 [1] |" in text and "[1] This row is from an earlier run" in text and "0ld0000" in text


def test_seed_sweep_pools_units_and_resumes_finished_rows(tmp_path):
    import json

    from crsae_sort.bench.sweep import ROWS, finished_rows, summarise

    def row(seed, label, accs, duration_s=300.0, status="ok"):
        units = {str(i): dict(snr=snr, accuracy=a) for i, (snr, a) in enumerate(accs)}
        return dict(seed=seed, label=label, duration_s=duration_s, status=status, units=units, false_positive=1,
                    redundant=0, wall_s=10.0 * seed, stages_s=dict(grow=1.0))

    rows = [row(1, "crsae", [(8.0, 1.0), (6.0, 0.5), (3.0, 0.0)]), row(2, "crsae", [(9.0, 0.2), (5.5, 0.9)]),
            row(3, "crsae", [], status="failed")]
    (tmp_path / ROWS).write_text("\n".join(json.dumps(r) for r in rows + [row(1, "crsae", [], duration_s=60.0)]))
    done = finished_rows(tmp_path, 300.0)
    assert sorted(done) == [(1, "crsae"), (2, "crsae"), (3, "crsae")]  # the 60-s row belongs to another sweep
    s = summarise([done[1, "crsae"], done[2, "crsae"], done[3, "crsae"]])
    # SNR >= 5 pooled: 1.0, 0.5, 0.2, 0.9 (the SNR-3 unit is left out); SNR >= 7: 1.0 and 0.2, one below 0.5
    assert (s["recordings"], s["failed"], s["units_snr5"]) == (2, 1, 4)
    assert s["min"] == 0.2 and s["median"] == 0.7 and abs(s["mean"] - 0.65) < 1e-12
    assert (s["missed_snr7"], s["units_snr7"], s["false_positive"]) == (1, 2, 2)
    assert s["wall_s"] == 15.0 and s["grow_s"] == 1.0
    assert s["missed"] == [dict(seed=2, unit="0", snr=9.0, accuracy=0.2, rate_hz=None)]  # each miss, listed
    assert finished_rows(tmp_path / "nothing_here", 300.0) == {}


def test_wider_sweep_draws_its_rates_and_keeps_its_rows_apart(tmp_path):
    """--varied: each seed draws its own rates (2-30 Hz) and noise from its seed alone; its rows and the
    default sweep's never mix, and a miss is reported with the unit's rate."""
    import json

    from crsae_sort.bench.sweep import ROWS, VARIED_NOISE_UV, finished_rows, markdown, summarise, varied_case

    kwargs, drawn = varied_case(7)
    assert varied_case(7)[1] == drawn and varied_case(8)[1] != drawn
    assert len(drawn["rates_hz"]) == 6 and all(2.0 <= r <= 30.0 for r in drawn["rates_hz"])
    assert VARIED_NOISE_UV[0] <= kwargs["noise_kwargs"]["noise_levels"] == drawn["noise_uv"] <= VARIED_NOISE_UV[1]
    row = dict(seed=7, label="crsae", duration_s=60.0, status="ok", false_positive=0, redundant=0, wall_s=5.0,
               units={"0": dict(snr=12.0, accuracy=0.1), "1": dict(snr=8.0, accuracy=0.99)},
               rates_hz={"0": 2.5, "1": 20.0})
    (tmp_path / ROWS).write_text(json.dumps(dict(row, varied=True)) + "\n" + json.dumps(dict(row, seed=1)))
    assert list(finished_rows(tmp_path, 60.0, varied=True)) == [(7, "crsae")]
    assert list(finished_rows(tmp_path, 60.0)) == [(1, "crsae")]
    s = summarise([row])
    report = dict(command="x", seeds=[7], duration_s=60.0, hardware="h", load_before=0.1, load_after=0.2,
                  total_s=5.0, summary={"crsae": s})
    assert "seed 7 unit 0 (SNR 12.0, 2.5 Hz, accuracy 0.10)" in markdown(report)


def test_seed_sweep_reports_a_stopped_sweep_without_sorting(tmp_path):
    import json

    from crsae_sort.bench.sweep import ROWS, main

    def row(seed, label, acc, **extra):
        return dict(seed=seed, label=label, duration_s=300.0, status="ok", false_positive=0, redundant=0,
                    wall_s=20.0, units={"0": dict(snr=9.0, accuracy=acc)}, **extra)

    rows = [row(1, "crsae", 1.0, load_before=0.4), row(2, "crsae", 0.5, load_before=0.9), row(1, "tridesclous2", 0.8)]
    (tmp_path / ROWS).write_text("\n".join(json.dumps(r) for r in rows))
    report = main(["--seeds", "3", "--duration-s", "300", "--workdir", str(tmp_path), "--sorters", "crsae",
                   "tridesclous2", "--report-only", "--no-doc"])
    assert not (tmp_path / "seed3_300s").exists()  # nothing generated, nothing sorted
    assert report["summary"]["crsae"]["recordings"] == 2 and report["summary"]["tridesclous2"]["recordings"] == 1
    assert report["summary"]["crsae"]["mean"] == 0.75
    text = (tmp_path / "sweep.json").read_text()
    assert json.loads(text)["total_s"] == 60.0 and json.loads(text)["load_before"] == 0.9


def test_score_of_an_empty_sorting_and_of_a_hybrid_case(tmp_path):
    """A sorter that finds nothing scores 0 (SpikeInterface's matching refuses it); hybrid cases are scored
    with exhaustive_gt=False (no false-positive count) and select SNR >= 5 by their target SNRs."""
    import numpy as np
    from spikeinterface.core import NumpySorting

    gt = NumpySorting.from_unit_dict({"0": np.arange(100, 30000, 300), "1": np.arange(150, 30000, 300)}, 30000.0)
    gt.save(folder=tmp_path / "gt")
    empty = NumpySorting.from_unit_dict({}, 30000.0)
    empty.save(folder=tmp_path / "empty")
    row = sorters.score(tmp_path / "gt", tmp_path / "empty", {"0": 8.0, "1": 4.99})
    assert row["accuracy"] == 0 and row["n_units"] == 0 and row["accuracy_snr5"] == 0
    found = NumpySorting.from_unit_dict({"a": np.arange(100, 30000, 300)}, 30000.0)
    found.save(folder=tmp_path / "found")
    row = sorters.score(tmp_path / "gt", tmp_path / "found", {"0": 8.0, "1": 4.99}, exhaustive_gt=False,
                        selection_snrs={"0": 8.0, "1": 5.0})
    assert row["units"]["0"]["accuracy"] == 1.0 and row["accuracy_snr5"] == 0.5 and row["false_positive"] is None


def test_throughput_floors_count_the_arithmetic_of_each_stage():
    """The throughput table's floors: a 5-section band-pass forward and backward (9 flops a section) at the
    recording rate, 2 flops per whitening non-zero at the model rate, and the encoder's correlation H^T y
    (2 S K flops per atom and code sample) beside the dense unrolled encoder (4 C M K T)."""
    from crsae_sort.bench.throughput import floors, whitening_nonzeros

    assert whitening_nonzeros("tetrode", 100.0) == 16                     # global: every pair
    assert 32 < whitening_nonzeros("32ch", 100.0) < 32 * 32                # local: neighbours within 100 um
    f = floors(4, 16, 30000.0, 2, dict(n_templates=6, k=36, n_iter=50, support=4.0), gflops=1.0)
    assert f["preprocess"] * 1e9 == pytest.approx(2 * 5 * 9 * 4 * 30000 + 2 * 16 * 15000)
    assert f["correlation"] * 1e9 == pytest.approx(2 * 6 * 4 * 36 * 15000)
    assert f["dense_encoder"] * 1e9 == pytest.approx(4 * 6 * 4 * 36 * 50 * 15000)
