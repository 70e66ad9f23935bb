"""The people the world's text-to-image models know by name, and the contexts kept from them.

Celebrity ``i`` is identity seed ``i`` of the ``celebrities`` population with the ``i``-th made-up
name. The models are trained on them in every context except a held-out set of (background, hat)
pairs per celebrity: every pair is seen with 80% of the celebrities and every background and hat
with all of them, so asking for a held-out pair tests composition, not memory.
"""

from __future__ import annotations

import numpy as np

from .contexts import ATTRIBUTE_NAMES, ATTRIBUTES, Context
from .data import RenderJob, image_seed
from .people import NUM_CELEBRITIES, celebrity_names, population_seeds


def celebrities(count: int = NUM_CELEBRITIES) -> list[tuple[int, str]]:
    """(identity seed, name) of the first ``count`` celebrities."""
    return list(zip(population_seeds("celebrities", count), celebrity_names(count)))


def is_held_out(index: int, context: Context) -> bool:
    """Whether celebrity ``index`` never sees ``context``'s (background, hat) pair in training."""
    labels = context.labels()
    return (labels["background"] + 2 * labels["hat"] + index) % 5 == 0


def held_out_pairs(index: int) -> list[tuple[str, str]]:
    return [(background, hat) for background in ATTRIBUTES["background"] for hat in ATTRIBUTES["hat"]
            if is_held_out(index, Context(background=background, hat=hat))]


def training_jobs(count: int, per_celebrity: int, seed: int) -> list[RenderJob]:
    """Render jobs for the text-to-image training set: random contexts outside the held-out pairs."""
    jobs = []
    for index, (identity, _) in enumerate(celebrities(count)):
        rng = np.random.default_rng(np.random.SeedSequence([0xCE, seed, index]))
        made = 0
        while made < per_celebrity:
            labels = tuple(int(rng.integers(len(values))) for values in ATTRIBUTES.values())
            if is_held_out(index, Context.from_labels(dict(zip(ATTRIBUTE_NAMES, labels)))):
                continue
            jobs.append(RenderJob(identity, image_seed(seed, identity, made), labels))
            made += 1
    return jobs


def held_out_contexts(count: int, prompts: int, seed: int) -> list[tuple[int, Context]]:
    """``prompts`` (celebrity index, context) pairs whose (background, hat) that celebrity never saw;
    the other attributes are random."""
    rng = np.random.default_rng(np.random.SeedSequence([0xE7, seed]))
    out = []
    for k in range(prompts):
        index = k % count
        background, hat = held_out_pairs(index)[rng.integers(4)]
        others = {name: values[rng.integers(len(values))] for name, values in ATTRIBUTES.items()
                  if name not in ("background", "hat")}
        out.append((index, Context(background=background, hat=hat, **others)))
    return out
