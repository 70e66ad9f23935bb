"""Small-sample versions of the world's quality figures, cheap enough for the test suite.

``small_sample_figures(seed)`` measures each figure on a few dozen pictures; the tests assert
bounds set from their spread over seeds (``benchmarks/world_quality_spread.py`` prints it), not
from a guess.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .quality import Judges, classifier_quality, clip_quality, held_out_renders, recogniser_quality, t2i_quality

#: sample sizes of the small-sample figures
SMALL = {"identities": 40, "per_identity": 2, "renders": 100, "clip_renders": 50, "prompts": 24, "steps": 20,
         "guidance": 5.0}


def small_sample_figures(seed: int, root: Path | None = None, models: tuple[str, ...] = ("world",)) -> dict:
    """{figure name: value} on small samples drawn with ``seed``."""
    from diffusers import DiffusionPipeline

    from . import component_path
    from .celebrities import NUM_CELEBRITIES

    judges = Judges.load(root)
    pairs = held_out_renders(SMALL["identities"], SMALL["per_identity"], seed)
    figures = {"recogniser_verification": recogniser_quality(judges, pairs)["accuracy"]}
    renders = held_out_renders(SMALL["renders"], 1, seed + 1)
    for name, value in classifier_quality(judges, renders).items():
        figures[f"classifier_{name}"] = value
    clip_pool = held_out_renders(SMALL["clip_renders"], 1, seed + 2)
    figures["clip_top1"] = clip_quality(component_path("clip", root), clip_pool)["top1_among_all_contexts"]
    for model in models:
        pipe = DiffusionPipeline.from_pretrained(component_path(model, root), dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        result = t2i_quality(pipe, judges, NUM_CELEBRITIES, SMALL["prompts"], seed, SMALL["steps"], SMALL["guidance"])
        figures[f"{model}_identity"] = result["identity_top1"]
        for name, value in result["context"].items():
            figures[f"{model}_{name}"] = value
    return figures


def spread(seeds: range, root: Path | None = None) -> dict[str, tuple[float, float]]:
    """(mean, standard deviation) of every small-sample figure over ``seeds``."""
    runs = [small_sample_figures(seed, root) for seed in seeds]
    return {name: (float(np.mean([r[name] for r in runs])), float(np.std([r[name] for r in runs], ddof=1)))
            for name in runs[0]}


def resolution(name: str) -> float:
    """The smallest step a small-sample figure can take: one of its samples changing its verdict."""
    if name == "recogniser_verification":
        return 1.0 / SMALL["identities"]  # the genuine pairs are the scarce ones
    if name.startswith("classifier_"):
        return 1.0 / SMALL["renders"]
    if name == "clip_top1":
        return 1.0 / SMALL["clip_renders"]
    return 1.0 / SMALL["prompts"]


def bound(name: str, mean: float, std: float) -> float:
    """A test's lower bound: three standard deviations under the mean over seeds, and never closer
    to the mean than one sample's worth (a figure that never moved over ten seeds can still move)."""
    return mean - max(3 * std, resolution(name))
