"""crsae-sort bench ablation --quick: two tiny configurations end to end, with every column measured."""
import json

from click.testing import CliRunner

from crsae_sort.cli import main as cli


def test_quick_ablation_measures_every_column(tmp_path):
    res = CliRunner().invoke(cli, ["bench", "ablation", "--quick", "--no-doc", "--workdir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(r["encoder"], r["n_iterations"], r["rule"]) for r in rows] == [("fista", 3, "ae-ls"),
                                                                           ("learned-steps", 3, "dec")]
    for r in rows:
        assert 0.0 <= r["accuracy_snr5"] <= 1.0 and r["n_units"] >= 1
        assert 0.0 < r["encoder_s_per_s"] < 5.0
        assert 0.0 < r["lasso_gap"] < 10.0          # T = 3 is not converged, and not absurd
        assert 0.0 <= r["dictionary_error"] < 1.0   # atoms are near some ground-truth template
        assert r["lambda_median"] > 0
    assert "| tetrode | fista | 3 | ae-ls |" in res.output
    assert (tmp_path / "ablation.png").stat().st_size > 10_000
    # a second run in the same folder reuses the finished rows instead of sorting again
    again = CliRunner().invoke(cli, ["bench", "ablation", "--quick", "--no-doc", "--workdir", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2
    assert "| tetrode | fista | 3 | ae-ls |" in again.output
