"""crsae_sort.bench.locust: the agreement table between two sortings."""
import numpy as np

from crsae_sort.bench.locust import agreement_table


def test_agreement_table_finds_the_matching_and_the_merged_units():
    from spikeinterface.core import NumpySorting

    fs = 15000.0
    rng = np.random.default_rng(0)
    a, b, c = (np.sort(rng.choice(np.arange(i, 400000, 3), 300, replace=False)) for i in range(3))
    reference = NumpySorting.from_unit_dict({"a": a, "b": b, "c": c, "tiny": a[:10] + 1}, fs)
    # the other sorting: "a" found as is, "b" and "c" merged into one unit
    other = NumpySorting.from_unit_dict({"x": a, "y": np.sort(np.concatenate([b, c]))}, fs)
    rows = {r.tdc_unit: r for r in agreement_table(reference, other, min_spikes=50)}
    assert set(rows) == {"a", "b", "c"}  # "tiny" has fewer than 50 spikes
    assert rows["a"].crsae_unit == "x" and rows["a"].agreement == 1.0 and rows["a"].crsae_spikes == 300
    assert rows["b"].crsae_unit == rows["c"].crsae_unit == "y"
    assert abs(rows["b"].agreement - 0.5) < 0.01
