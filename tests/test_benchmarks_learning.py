"""crsae_sort.bench.learning: its row function on a seeded 10-s tetrode returns sane numbers."""
import pytest

from crsae_sort.bench import learning


@pytest.fixture(scope="module")
def prepared():
    case = learning.load_case("tetrode", duration_s=10.0)
    return learning.prepare(case, seed=0)


def test_rows_are_sane_and_noise_moves_the_atoms_away(prepared):
    clean = learning.run_row(prepared, "clean", trained=False)
    noisy = learning.run_row(prepared, "noisy", trained=False)
    for row in (clean, noisy):
        assert 0.0 <= row["accuracy"] <= 1.0
        assert 0.0 <= row["cosine_min"] <= row["cosine_mean"] <= 1.0
        assert row["steps"] == row["step_kept"] == 0  # max_epochs=0: the start is kept as it is
        assert row["lambda_min"] == row["lambda_max"] > 0  # lambda stays at its one starting value
    assert clean["cosine_mean"] == pytest.approx(clean["cosine_start"])
    assert noisy["cosine_mean"] < clean["cosine_mean"] - 0.02


