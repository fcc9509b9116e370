"""One source of truth for parameters: parsing, validation, description."""
import json

import pytest

from crsae_sort.params import ENCODER_SECTIONS, SECTIONS, SortParams, default_params, describe


def test_defaults_round_trip_through_flat_dict():
    flat = default_params()
    assert SortParams.from_dict(flat) == SortParams()
    assert json.loads(SortParams().to_json()) == flat


def test_strings_are_parsed_to_field_types():
    p = SortParams.from_dict({"n_iterations": "30", "positive_codes": "false", "freq_min_hz": "250",
                              "device": "cpu"})
    assert p.model.n_iterations == 30 and p.model.positive_codes is False
    assert p.preprocess.freq_min_hz == 250.0 and p.run.device == "cpu"


@pytest.mark.parametrize("flat, message", [
    ({"n_iteration": 3}, "unknown parameter"),
    ({"n_iterations": 0}, "outside the allowed range"),
    ({"n_iterations": 2.5}, "must be of type int"),
    ({"learning_rate": 0.0}, "outside the allowed range"),
    ({"detect_threshold": float("nan")}, "NaN"),
    ({"common_reference": "mean"}, "must be one of"),
    ({"whiten": "maybe"}, "must be of type bool"),
    ({"freq_min_hz": 7000.0}, "must be below freq_max_hz"),
    ({"n_templates": 40, "max_templates": 10}, "exceeds max_templates"),
    ({"device": "gpu"}, "device"),
])
def test_bad_values_raise_value_error_naming_the_field(flat, message):
    with pytest.raises(ValueError, match=message):
        SortParams.from_dict(flat)


def test_describe_covers_every_field_with_help():
    rows = describe()
    names = [r["name"] for r in rows]
    sections = {**SECTIONS, **ENCODER_SECTIONS}
    assert len(names) == len(set(names)) == sum(len(k.__dataclass_fields__) for k in sections.values())
    assert all(r["help"] for r in rows)
    assert {"n_iterations", "device", "seed", "chunk_duration_s"} <= set(names)


def test_docs_parameter_table_is_current():
    from pathlib import Path

    from crsae_sort.cli.tools import markdown_table

    doc = Path(__file__).resolve().parents[1] / "docs" / "parameters.md"
    assert doc.read_text().strip() == markdown_table().strip(), "run: crsae-sort params --markdown > docs/parameters.md"


def test_encoder_options_belong_to_their_encoder():
    p = SortParams.from_dict({"encoder": "reweighted-candes", "reweighted_candes_epsilon": "0.5"})
    assert p.encoder_options().reweighted_candes_epsilon == 0.5
    with pytest.raises(ValueError, match="belong to another encoder"):
        SortParams.from_dict({"reweighted_momentum": False})  # encoder=fista
    assert SortParams.from_dict({"reweighted_momentum": True}) == SortParams()  # a default is harmless
    with pytest.raises(ValueError, match="outside the allowed range"):
        SortParams.from_dict({"encoder": "reweighted-candes", "reweighted_candes_epsilon": 0.0})
