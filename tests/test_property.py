"""Property-based: over parameters and recording shapes, a sort either works or says why (InputError)."""
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from crsae_sort import InputError, sort
from crsae_sort.params import describe

# fields whose extreme values only make a run long; drawn from a smaller, still valid, range
CHEAP = {"n_iterations": st.integers(1, 12), "max_epochs": st.integers(0, 1), "n_windows": st.integers(16, 48),
         "batch_size": st.integers(1, 16), "init_duration_s": st.floats(1.0, 3.0),
         "max_templates": st.integers(1, 6), "n_templates": st.integers(0, 6),
         "chunk_duration_s": st.floats(0.05, 2.0), "device": st.just("cpu"), "num_threads": st.just(0),
         "eval_every": st.integers(1, 20), "window_ms": st.floats(2.0, 60.0)}


def value_strategy(row):
    """Values in and a little out of the documented bounds, and wrong types now and then."""
    if row["name"] in CHEAP:
        return CHEAP[row["name"]]
    default = row["default"]
    if isinstance(default, bool):
        return st.sampled_from([True, False, "yes", "perhaps"])
    if isinstance(default, str):
        choices = row["bounds"].split(" | ") if row["bounds"] else [default]
        return st.sampled_from(choices + ["bogus"])
    low, high = (float(x) for x in row["bounds"].strip("[(]").split(", "))
    span = high - low
    floats = st.floats(low - 0.1 * span, min(high, low + 0.05 * span + 20) + 0.1, allow_nan=False)
    if isinstance(default, int):
        return floats.map(lambda v: int(round(v)))
    return floats


PARAM_ROWS = describe()


@st.composite
def params_strategy(draw):
    chosen = draw(st.lists(st.sampled_from(PARAM_ROWS), max_size=6, unique_by=lambda r: r["name"]))
    flat = {name: draw(CHEAP[name]) for name in ("n_iterations", "max_epochs", "n_windows", "init_duration_s")}
    for row in chosen:
        flat[row["name"]] = draw(value_strategy(row))
    return flat


@st.composite
def recording_strategy(draw):
    import probeinterface as pi
    from spikeinterface.core import NumpyRecording

    fs = draw(st.sampled_from([800.0, 10000.0, 24000.0, 30000.0]))
    n_channels = draw(st.integers(1, 5))
    n_samples = draw(st.integers(50, int(1.5 * fs)))
    seed = draw(st.integers(0, 1000))
    rng = np.random.default_rng(seed)
    traces = rng.standard_normal((n_samples, n_channels)).astype("float32") * 5
    n_spikes = draw(st.integers(0, 60))
    shape = -np.exp(-((np.arange(24) - 8) / 2.0) ** 2)
    for t in rng.integers(0, max(1, n_samples - 24), size=n_spikes):
        traces[t: t + 24] += 60 * shape[: len(traces[t: t + 24]), None] * rng.uniform(0.5, 1, n_channels)
    rec = NumpyRecording([traces], fs)
    probe = pi.generate_linear_probe(num_elec=n_channels, ypitch=20)
    probe.set_device_channel_indices(np.arange(n_channels))
    rec.set_probe(probe, in_place=True)
    return rec


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(recording=recording_strategy(), flat=params_strategy())
def test_sort_works_or_raises_a_clean_input_error(recording, flat):
    try:
        result = sort(recording, None, flat, progress=False)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        event(f"InputError: {str(exc)[:40]}")
        return
    event("sorted")
    n_units = len(result.sorting.unit_ids)
    assert result.templates_uv.shape[0] == n_units
    assert result.templates_uv.shape[2] == recording.get_num_channels()
    spikes = result.spikes
    assert np.all((spikes["sample_index"] >= 0) & (spikes["sample_index"] < recording.get_num_samples()))
