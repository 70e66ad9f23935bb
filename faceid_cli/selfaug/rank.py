"""Step 4's filter: rank the edited images of each prompt and keep the top fraction.

Each candidate has an ID loss (1 - cosine of identity embeddings against its source face; an image
with no face gets :data:`NO_FACE_ID_LOSS`, the worst possible) and a CLIP score (image-text cosine
with the name replaced by a neutral word). Within each edit prompt the candidates are ranked, and
the best ``keep`` fraction (rounded up, at least one) is kept. Rules:

- ``rank-sum`` (default): rank by ID loss (ascending) and by CLIP score (descending) separately,
  add the two ranks; lower is better. Neither score's scale matters, only its order.
- ``id``: ID loss alone; ``clip``: CLIP score alone (the ablations).

Ties are broken by (name, seed), so the kept set is a function of the scores alone: it cannot
depend on how the work was sharded or in which order it finished.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

RULES = ("rank-sum", "id", "clip")
#: an edited image without a face is worse than any with one (1 - cos is at most 2)
NO_FACE_ID_LOSS = 2.0
RULE_TEXT = {
    "rank-sum": "rank by ID loss (ascending) and by CLIP score (descending) within each prompt; keep the lowest "
                "sum of the two ranks",
    "id": "rank by ID loss alone (ascending) within each prompt",
    "clip": "rank by CLIP score alone (descending) within each prompt",
}


def _ranks(values: Sequence[float], keys: Sequence[tuple]) -> list[float]:
    """1-based ranks of ``values`` (ascending); equal values share their mean rank."""
    order = sorted(range(len(values)), key=lambda i: (values[i], keys[i]))
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def select(candidates: Sequence[dict], keep: float, rule: str = "rank-sum") -> tuple[list[dict], list[dict]]:
    """(kept, rejected) of ``candidates`` (dicts with prompt, name, seed, id_loss, clip_score), each
    candidate annotated with its ``rank_score`` and ``rank`` within its prompt."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}")
    if not 0 < keep <= 1:
        raise ValueError("keep must be in (0, 1]")
    by_prompt: dict[str, list[dict]] = {}
    for candidate in candidates:
        by_prompt.setdefault(candidate["prompt"], []).append(dict(candidate))
    kept, rejected = [], []
    for prompt in sorted(by_prompt):
        group = sorted(by_prompt[prompt], key=lambda c: (c["name"], c["seed"]))
        keys = [(c["name"], c["seed"]) for c in group]
        id_rank = _ranks([c["id_loss"] for c in group], keys)
        clip_rank = _ranks([-c["clip_score"] for c in group], keys)
        for candidate, a, b in zip(group, id_rank, clip_rank):
            candidate["rank_score"] = {"rank-sum": a + b, "id": a, "clip": b}[rule]
        group.sort(key=lambda c: (c["rank_score"], c["name"], c["seed"]))
        count = max(1, math.ceil(keep * len(group)))
        for position, candidate in enumerate(group, 1):
            candidate["rank"] = position
        kept += group[:count]
        rejected += group[count:]
    return kept, rejected
