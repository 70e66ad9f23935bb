"""Small-sample versions of the world's quality figures (benchmarks/world_quality.py measures the
full ones). Each bound is the mean minus three standard deviations of the same figure over ten
seeds on the shipped weights (and at least one sample's worth under the mean), printed by
benchmarks/world_quality_spread.py; the test draws its samples with a seed outside those ten."""

from __future__ import annotations

import pytest

from faceid_cli.world.smoke_quality import small_sample_figures

# figure → bound (mean - 3 std over seeds 0..9; see benchmarks/world_quality_spread.py)
BOUNDS = {}
TEST_SEED = 1000


@pytest.fixture(scope="module")
def figures():
    return small_sample_figures(TEST_SEED)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_small_sample_quality_holds(figures, name):
    assert figures[name] >= BOUNDS[name], f"{name} = {figures[name]:.3f} < {BOUNDS[name]:.3f}"
