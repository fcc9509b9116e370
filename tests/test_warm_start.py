"""scripts/benchmark_warm_start.py --quick: one trained model read out by FISTA-50, FISTA-5 and SISTA."""
import numpy as np

from crsae_sort.bench.warm_start import Row, at_equal_spikes, main, spike_agreement
from crsae_sort.infer import Spikes


def _spikes(times, units):
    n = len(times)
    return Spikes(np.array(times, np.int64), np.zeros(n, np.int64), np.array(units, np.int64), np.ones(n, np.float32))


def test_spike_agreement_matches_one_to_one_within_the_tolerance():
    a = _spikes([10, 50, 90, 200], [0, 0, 1, 1])
    assert spike_agreement(a, a) == 1.0
    b = _spikes([11, 52, 90, 90], [0, 0, 1, 0])   # 11 matches 10; 52 is 2 away; 90 of unit 0 is not unit 1's
    assert spike_agreement(a, b) == 2 * 2 / 8
    assert spike_agreement(_spikes([], []), _spikes([], [])) == 1.0


def test_at_equal_spikes_is_the_fewest_iterations_within_the_margin():
    rows = [Row("c", "fista", t, 0.0, float(t), agr, 1.0, 0.1) for t, agr in ((50, 1.0), (20, 0.995), (10, 0.9))]
    rows += [Row("c", "sista", 5, 1.0, 10.0, 0.999, 1.0, 0.1), Row("c", "sista", 10, 0.0, 20.0, 0.992, 1.0, 0.1)]
    assert at_equal_spikes(rows, "fista") == 20.0
    assert at_equal_spikes(rows, "sista") == 20.0          # lambda_2 = 0 rows only
    assert at_equal_spikes(rows, "sista", coupling=1.0) == 10.0


def test_quick_run_measures_every_column(tmp_path, capsys):
    rows = main(["--quick", "--no-doc", "--workdir", str(tmp_path)])
    assert [(r.encoder, r.n_iterations) for r in rows] == [("fista", 50), ("fista", 5), ("sista", 3)]
    assert rows[0].agreement == 1.0 and rows[2].iterations_per_sample == 6.0
    for r in rows:
        assert 0.0 < r.agreement <= 1.0 and 0.0 <= r.accuracy_snr5 <= 1.0 and 0.0 < r.readout_s_per_s < 5.0
    assert "| tetrode | sista | 3 | 0 | 6 |" in capsys.readouterr().out
