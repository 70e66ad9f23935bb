"""Small-sample versions of the world's quality figures (benchmarks/world_quality.py measures the
full ones). Each bound is the mean minus three standard deviations of the same figure over ten
seeds on the shipped weights (and at least one sample's worth under the mean), printed by
benchmarks/world_quality_spread.py; the test draws its samples with a seed outside those ten."""

from __future__ import annotations

import pytest

from faceid_cli.world.smoke_quality import small_sample_figures

# figure → bound (mean - 3 std over seeds 0..9; see benchmarks/world_quality_spread.py)
BOUNDS = {
    "recogniser_verification": 0.968,  # mean 0.993, std 0.005
    "classifier_style": 0.990,  # mean 1.000, std 0.000
    "classifier_hat": 0.990,  # mean 1.000, std 0.000
    "classifier_glasses": 0.969,  # mean 0.991, std 0.007
    "classifier_shirt": 0.990,  # mean 1.000, std 0.000
    "classifier_background": 0.990,  # mean 1.000, std 0.000
    "clip_top1": 0.865,  # mean 0.940, std 0.025
    "world_identity": 0.445,  # mean 0.729, std 0.095 (chance 0.010)
    "world_style": 0.958,  # mean 1.000, std 0.000
    "world_hat": 0.958,  # mean 1.000, std 0.000
    "world_glasses": 0.765,  # mean 0.933, std 0.056
    "world_shirt": 0.958,  # mean 1.000, std 0.000
    "world_background": 0.958,  # mean 1.000, std 0.000
}
TEST_SEED = 1000


@pytest.fixture(scope="module")
def figures():
    return small_sample_figures(TEST_SEED)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_small_sample_quality_holds(figures, name):
    assert figures[name] >= BOUNDS[name], f"{name} = {figures[name]:.3f} < {BOUNDS[name]:.3f}"
