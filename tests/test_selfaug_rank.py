"""Step 4's ranking and filtering on hand-made scores, with the exact expected selection."""

from __future__ import annotations

import pytest

from faceid_cli.selfaug.rank import NO_FACE_ID_LOSS, select


def _candidate(prompt, name, seed, id_loss, clip):
    return {"prompt": prompt, "name": name, "seed": seed, "id_loss": id_loss, "clip_score": clip}


CANDIDATES = [
    # prompt A: eight candidates, keep 0.25 -> 2
    _candidate("A", "ann", 1, 0.10, 0.20),  # id rank 1, clip rank 6  -> 7
    _candidate("A", "bob", 1, 0.20, 0.30),  # id rank 2, clip rank 2  -> 4  (kept)
    _candidate("A", "cat", 1, 0.30, 0.31),  # id rank 3, clip rank 1  -> 4  (kept; ties by name after bob)
    _candidate("A", "dan", 1, 0.40, 0.25),  # id rank 4, clip rank 4  -> 8
    _candidate("A", "eve", 1, 0.50, 0.29),  # id rank 5, clip rank 3  -> 8
    _candidate("A", "fay", 1, 0.60, 0.22),  # id rank 6, clip rank 5  -> 11
    _candidate("A", "gus", 1, 0.70, 0.10),  # id rank 7, clip rank 7  -> 14
    _candidate("A", "hal", 1, NO_FACE_ID_LOSS, 0.05),  # no face: worst id
    # prompt B: three candidates, keep 0.25 -> ceil(0.75) = 1
    _candidate("B", "ann", 2, 0.50, 0.10),
    _candidate("B", "bob", 2, 0.05, 0.09),
    _candidate("B", "cat", 2, 0.40, 0.30),
]


def test_rank_sum_keeps_the_top_quarter_of_each_prompt():
    kept, rejected = select(CANDIDATES, 0.25)
    assert [(c["prompt"], c["name"]) for c in kept] == [("A", "bob"), ("A", "cat"), ("B", "cat")]
    assert len(kept) + len(rejected) == len(CANDIDATES)
    b = {c["name"]: c for c in kept + rejected if c["prompt"] == "B"}
    # B: id ranks bob 1, cat 2, ann 3; clip ranks cat 1, ann 2, bob 3 -> cat 3, bob 4, ann 5
    assert (b["cat"]["rank_score"], b["bob"]["rank_score"], b["ann"]["rank_score"]) == (3, 4, 5)


@pytest.mark.parametrize("rule,expected", [("id", [("A", "ann"), ("A", "bob"), ("B", "bob")]),
                                           ("clip", [("A", "cat"), ("A", "bob"), ("B", "cat")])])
def test_the_ablation_rules(rule, expected):
    kept, _ = select(CANDIDATES, 0.25, rule)
    assert [(c["prompt"], c["name"]) for c in kept] == expected


def test_the_selection_does_not_depend_on_the_order_of_the_candidates():
    kept, _ = select(CANDIDATES, 0.5)
    shuffled, _ = select(list(reversed(CANDIDATES)), 0.5)
    assert [(c["prompt"], c["name"], c["seed"]) for c in kept] == [(c["prompt"], c["name"], c["seed"]) for c in shuffled]


def test_a_faceless_image_is_never_kept_over_one_with_a_face():
    kept, _ = select([_candidate("C", "x", 1, NO_FACE_ID_LOSS, 0.9), _candidate("C", "y", 1, 1.5, 0.1)], 0.5, "id")
    assert [c["name"] for c in kept] == ["y"]


def test_bad_rule_or_fraction():
    with pytest.raises(ValueError):
        select(CANDIDATES, 0.25, "magic")
    with pytest.raises(ValueError):
        select(CANDIDATES, 0.0)
