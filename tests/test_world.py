"""The miniature world's people, contexts, renderer, tokenizer and batched alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from faceid_cli.world.contexts import ATTRIBUTES, Context, all_contexts, caption, parse_prompt
from faceid_cli.world.people import (
    EYE_COLOURS,
    SEED_RANGES,
    celebrity_names,
    identity_from_seed,
    population_of,
    population_seeds,
)
from faceid_cli.world.render import SIZE, Pose, render, render_negative, render_sample


def test_identity_ranges_are_disjoint_and_every_seed_has_one_population():
    ranges = sorted(SEED_RANGES.values())
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        assert end <= start
    for name, (start, end) in SEED_RANGES.items():
        assert population_of(start) == name and population_of(end - 1) == name
        assert population_seeds(name, 3) == [start, start + 1, start + 2]
    with pytest.raises(ValueError):
        population_of(SEED_RANGES["held_out"][1])
    with pytest.raises(ValueError):
        population_seeds("held_out", SEED_RANGES["held_out"][1] - SEED_RANGES["held_out"][0] + 1)


def test_identity_traits_are_fixed_by_the_seed_and_differ_between_seeds():
    assert identity_from_seed(7) == identity_from_seed(7)
    people = [identity_from_seed(s) for s in range(200)]
    assert len({(p.skin, p.hair_style, p.hair_colour, p.eye_spacing) for p in people}) == 200
    # identity is more than one colour: several discrete traits take many values
    assert len({p.hair_style for p in people}) >= 6
    assert len({p.eye_colour for p in people}) == len(EYE_COLOURS)
    assert len({p.facial_hair for p in people}) >= 3


def test_renderer_is_deterministic_per_seed():
    a = render_sample(9_000_001, image_seed=5)
    b = render_sample(9_000_001, image_seed=5)
    c = render_sample(9_000_001, image_seed=6)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert a.ground_truth() == b.ground_truth()
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert a.image.size == (SIZE, SIZE) and a.image.mode == "RGB"


@pytest.mark.parametrize("pose", [Pose(), Pose(dx=3, dy=-2, scale=1.08, roll=9, yaw=1), Pose(dx=-3, roll=-9, yaw=-1)])
def test_landmarks_fall_on_the_drawn_eyes_nose_and_mouth(pose):
    person = identity_from_seed(123)
    context = Context(background="green", glasses="none", hat="none")
    drawn = render(person, context, pose)
    pixels = np.asarray(drawn.image).astype(int)
    iris = np.array(EYE_COLOURS[person.eye_colour])
    for x, y in drawn.landmarks[:2]:
        # the pixel under each eye landmark is the eye's dark pupil or iris, not skin
        patch = pixels[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2].reshape(-1, 3)
        nearest = np.abs(patch - iris).sum(1).min()
        darkest = patch.sum(1).min()
        assert nearest < 90 or darkest < 150
        assert np.abs(patch - np.array(person.skin)).sum(1).min() > 40 or darkest < 150
    # the eyes are level with each other up to the roll, the nose between and below them,
    # the mouth corners below the nose
    left, right, nose, mouth_left, mouth_right = drawn.landmarks
    assert left[0] < nose[0] < right[0] or abs(pose.yaw) > 0
    assert nose[1] > min(left[1], right[1]) and mouth_left[1] > nose[1] - 1 and mouth_right[1] > nose[1] - 1
    x1, y1, x2, y2 = drawn.bbox
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in drawn.landmarks)


def test_landmarks_track_the_pose():
    person = identity_from_seed(4)
    base = render(person, Context(), Pose()).landmarks
    shifted = render(person, Context(), Pose(dx=2, dy=-1)).landmarks
    assert np.allclose(shifted - base, [2, -1])
    rolled = render(person, Context(), Pose(roll=9)).landmarks
    angle = np.degrees(np.arctan2(rolled[1, 1] - rolled[0, 1], rolled[1, 0] - rolled[0, 0]))
    assert angle == pytest.approx(9, abs=0.5)


def test_context_changes_the_picture_where_it_should():
    person = identity_from_seed(11)
    plain = np.asarray(render(person, Context(hat="none", background="gray")).image).astype(int)
    hat = np.asarray(render(person, Context(hat="red", background="gray")).image).astype(int)
    green = np.asarray(render(person, Context(hat="none", background="green")).image).astype(int)
    changed = np.abs(hat - plain).sum(-1) > 30
    assert changed[:SIZE // 2].sum() > 5 * changed[SIZE // 2:].sum()  # a hat changes the top
    corner = green[:6, :6].reshape(-1, 3).mean(0)
    assert corner[1] > corner[0] + 40 and corner[1] > corner[2] + 40  # a green background is green
    sketch = np.asarray(render(person, Context(style="pencil sketch")).image).astype(int)
    assert sketch.mean() > plain.mean() + 15  # pencil on white paper


@pytest.mark.parametrize("change", [{"hat": "red"}, {"glasses": "sunglasses"}, {"background": "green"},
                                    {"style": "pencil sketch"}])
def test_the_aligned_reference_crop_shows_context(change):
    """The paper's failure mode is possible here: an encoder fed the aligned crop sees hat, glasses,
    background and style, so a reconstruction-only encoder can learn to copy them into S*."""
    from faceid_cli.faces import align_face

    person = identity_from_seed(12)
    base = Context(hat="none", glasses="none", background="gray", style="photo")
    crops = []
    for context in (base, Context(**{**base.__dict__, **change})):
        drawn = render(person, context)
        crops.append(np.asarray(align_face(drawn.image, drawn.landmarks, 112)).astype(int))
    changed = np.abs(crops[1] - crops[0]).sum(-1) > 40
    assert changed.mean() > 0.02, f"{change} is invisible in the aligned crop"


def test_negatives_have_no_face_and_are_deterministic():
    a, b = render_negative(3), render_negative(3)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and a.size == (SIZE, SIZE)


def test_caption_grammar_round_trips_every_context():
    for context in all_contexts():
        text = caption(context, "Kamora Vikis")
        assert parse_prompt(text) == context.to_dict()
        assert "no hat" not in text and "no glasses" not in text
    partial = caption(Context(hat="blue", background="yellow"), "S*", include=frozenset({"hat", "background"}))
    assert partial == "S* wearing a blue hat, yellow background"
    assert parse_prompt(partial) == {"hat": "blue", "background": "yellow"}
    assert parse_prompt("a photo of S* wearing sunglasses") == {"style": "photo", "glasses": "sunglasses"}
    assert parse_prompt("S* as a chef") == {}
    assert len(all_contexts()) == np.prod([len(v) for v in ATTRIBUTES.values()])


def test_celebrity_names_are_distinct_two_word_names():
    names = celebrity_names(100)
    words = [w for name in names for w in name.split()]
    assert len(names) == 100 and len(set(words)) == 200
    assert celebrity_names(10) == names[:10]


def test_world_tokenizer_holds_every_world_word_whole():
    from faceid_cli.world.tokenizer import build_tokenizer, world_words

    tokenizer = build_tokenizer(20)
    for word in world_words(20):
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    ids = tokenizer("a photo of S* wearing a red hat").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id == max(tokenizer.get_vocab().values())  # CLIP's layout
    assert tokenizer("any text at all, even émigré").input_ids  # unknown words fall back to bytes


def test_world_tokenizer_is_the_same_in_every_process():
    """The text towers are trained in one process and fine-tuned in another: token ids must not
    depend on the process (tokenizers' own BPE trainer broke ties differently per process)."""
    import os
    import subprocess
    import sys

    script = ("import json; from faceid_cli.world.tokenizer import build_tokenizer; t = build_tokenizer(100); "
              "print(json.dumps([sorted(t.get_vocab().items()), t.backend_tokenizer.to_str()]))")
    outputs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    assert outputs[0] == outputs[1] and len(outputs[0]) > 1000


def test_train_merges_ranks_the_most_frequent_pair_first_and_breaks_ties_by_order():
    from faceid_cli.world.tokenizer import train_merges

    # ("a", "b") occurs twice, so it comes first; then the ties, in sorted order
    assert train_merges(["xy", "abd", "abc"]) == [("a", "b"), ("ab", "c</w>"), ("ab", "d</w>"), ("x", "y</w>")]


def test_align_batch_matches_align_face():
    from faceid_cli.faces import align_face
    from faceid_cli.world.data import align_batch

    drawn = [render_sample(9_000_000 + i, image_seed=i) for i in range(4)]
    images = torch.stack([torch.from_numpy(np.asarray(d.image, dtype=np.float32) / 255).permute(2, 0, 1) for d in drawn])
    landmarks = torch.from_numpy(np.stack([d.landmarks for d in drawn]))
    # the same warp as faceid's norm_crop alignment: with its bilinear kernel, the same pixels up to
    # OpenCV's 1/32-pixel fixed-point coordinates and rounding
    batched = (align_batch(images, landmarks, 112, mode="bilinear").permute(0, 2, 3, 1).numpy() * 255)
    for crop, d in zip(batched, drawn):
        reference = np.asarray(align_face(d.image, d.landmarks, 112)).astype(np.float32)
        assert np.abs(crop - reference).mean() < 0.3 and np.abs(crop - reference).max() < 1.0


def test_contact_sheet_lays_out_rows_and_captions():
    from faceid_cli.contact_sheet import contact_sheet

    red = Image.new("RGB", (64, 64), (255, 0, 0))
    sheet = contact_sheet([[red, None], [red, red]], [["ref", ""], ["a", "b"]], cell=100, title="demo")
    assert sheet.width == 6 + 2 * 106
    pixels = np.asarray(sheet)
    assert (pixels == [255, 0, 0]).all(-1).sum() == 3 * 100 * 100


def test_obey_or_copy_counts_only_conflicting_prompts():
    from faceid_cli.world.quality import obey_or_copy

    hats = ATTRIBUTES["hat"]
    reference = Context(hat="blue")
    asked = [{"hat": "red"}, {"hat": "red"}, {"hat": "red"}, {"hat": "blue"}, {"background": "green"}]
    shown = torch.tensor([hats.index("red"), hats.index("blue"), hats.index("yellow"), hats.index("blue"), 0])
    predicted = {name: torch.zeros(5, dtype=torch.long) for name in ATTRIBUTES}
    predicted["hat"] = shown
    result = obey_or_copy(asked, [reference] * 5, predicted)
    # three prompts conflict on the hat (the fourth asks for the reference's own hat)
    assert result["hat"] == {"obeyed": 1 / 3, "copied": 1 / 3, "other": 1 / 3, "count": 3}
    assert "background" in result and result["background"]["count"] == 1  # gray reference, green asked


def test_verification_figures_on_known_embeddings():
    from faceid_cli.world.quality import verification

    same = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]), dim=-1)
    figures = verification(same, [1, 1, 2, 2])
    assert figures["auc"] == 1.0 and figures["accuracy"] == 1.0
    assert figures["pairs_same"] == 2 and figures["pairs_different"] == 4


def test_context_classifier_round_trips_with_and_without_its_full_resolution_stem(tmp_path):
    import json

    from faceid_cli.world.nets import ContextClassifier, WorldNet

    images = torch.rand(2, 3, 64, 64)
    for stem in (0, 8):
        net = ContextClassifier(widths=(8, 8, 8, 8), stem=stem).eval()
        folder = net.save_pretrained(tmp_path / f"stem{stem}", dtype=torch.float32)
        loaded = WorldNet.from_pretrained(folder)
        with torch.no_grad():
            assert all(torch.equal(net(images)[k], loaded(images)[k]) for k in ATTRIBUTES)
        assert isinstance(loaded.trunk[0][0], torch.nn.Conv2d)
        assert loaded.trunk[0][0].stride == ((1, 1) if stem else (2, 2))
    # a classifier saved before the stem existed (its config has no "stem") loads as it was
    config = json.loads((tmp_path / "stem0" / "config.json").read_text())
    del config["stem"]
    (tmp_path / "stem0" / "config.json").write_text(json.dumps(config))
    assert WorldNet.from_pretrained(tmp_path / "stem0").config["stem"] == 0
