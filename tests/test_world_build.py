"""``faceid world build``: the recipe runs end to end (at 1% of the work) and is deterministic."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from faceid_cli.world import COMPONENTS, SUMMARY_NAME
from faceid_cli.world.build import RECIPE, build, quick_recipe

from .helpers import build_machine_paths


def _digest(folder):
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def quick_world(tmp_path_factory):
    from typer.testing import CliRunner

    from faceid_cli.cli import app

    out = tmp_path_factory.mktemp("world")
    work = tmp_path_factory.mktemp("work")
    every = [arg for step in ("recogniser", "detector", "classifier", "face-vit", "vae", "clip", "text_towers",
                              "world", "world-xl", "m2-encoder") for arg in ("--only", step)]
    result = CliRunner().invoke(app, ["world", "build", "--quick", "--no-measure", "-o", str(out), "--work-dir",
                                      str(work), "--json", *every])
    assert result.exit_code == 0, result.output
    return out, work, json.loads(result.stdout)


def test_built_configs_name_no_folder_of_the_build_machine(quick_world):
    out, _, _ = quick_world
    assert build_machine_paths(out) == []


def test_quick_build_writes_every_component_in_its_real_format(quick_world):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    from faceid_cli.evaluate.clip_scorer import ClipScorer
    from faceid_cli.faces.backend_world import WorldFaceAnalyzer

    out, _, summary = quick_world
    for name, folder in COMPONENTS.items():
        assert (out / folder).is_dir(), name
    assert isinstance(DiffusionPipeline.from_pretrained(out / "world"), StableDiffusionPipeline)
    assert isinstance(DiffusionPipeline.from_pretrained(out / "world-xl"), StableDiffusionXLPipeline)
    assert ClipScorer.from_pretrained(str(out / "clip")).text_embeddings(["a person"]).shape[0] == 1
    assert WorldFaceAnalyzer(out).embedding_dim == 128
    # the M² encoder's frozen backbone is face-vit's tensors, shipped once and read from there
    from safetensors.torch import load_file

    from faceid_cli.encoders import load_encoder

    heads = load_file(str(out / "m2-encoder" / "model.safetensors"))
    assert heads and not any(key.startswith("backbone.") for key in heads)
    encoder, vit = load_encoder(out / "m2-encoder"), load_file(str(out / "face-vit" / "model.safetensors"))
    assert all(torch.equal(value.half(), vit[key]) for key, value in encoder.backbone.state_dict().items())
    written = json.loads((out / SUMMARY_NAME).read_text())
    assert written["recipe"]["celebrities"] == summary["recipe"]["celebrities"]
    assert set(written["seconds"]) == set(summary["components"])
    # the summary says what precision the text-to-image models were trained in on this machine
    from faceid_cli.world.recipes.common import resolved_precision

    assert summary["components"]["world"]["precision"] == resolved_precision("auto")
    # the text towers' tokenizer is kept with them, and every T2I trains with its towers' own
    from transformers import CLIPTokenizer

    _, work, _ = quick_world
    vocabulary = CLIPTokenizer.from_pretrained(work / "parts" / "tokenizer").get_vocab()
    for model in ("world", "world-xl"):
        assert CLIPTokenizer.from_pretrained(out / model / "tokenizer").get_vocab() == vocabulary
    # the parts that ship only inside the pipelines stay in the work folder
    assert not (out / "vae").exists() and not (out / "text_encoder").exists()


def test_a_plain_build_makes_what_ships():
    from faceid_cli.world import SHIPPED
    from faceid_cli.world.build import DEFAULT_STEPS

    written = {"recogniser", "detector", "classifier", "face-vit", "clip", "world", "m2-encoder"} & set(DEFAULT_STEPS)
    assert written == set(SHIPPED) and "world-xl" not in DEFAULT_STEPS


def test_build_refuses_an_unknown_step(tmp_path):
    from typer.testing import CliRunner

    from faceid_cli.cli import app

    result = CliRunner().invoke(app, ["world", "build", "--only", "unet", "-o", str(tmp_path / "w")])
    assert result.exit_code == 2 and "unet" in result.stderr and "recogniser" in result.stderr
    assert not (tmp_path / "w").exists()


def test_rebuilding_a_step_gives_identical_weights(quick_world, tmp_path):
    out, work, _ = quick_world
    again = tmp_path / "again"
    build(again, quick_recipe(RECIPE), only=["recogniser", "detector"], work_dir=work, measure=False)
    for name in ("recogniser", "detector"):
        assert _digest(again / COMPONENTS[name]) == _digest(out / COMPONENTS[name]), name


def test_the_t2i_fine_tunes_its_pretrained_text_tower_and_world_xl_starts_from_it(quick_world):
    """Frozen, the pre-trained tower drew every celebrity alike (see recipes/t2i.py): world ships
    the tower it fine-tuned, and world-xl's first tower starts from that one, not from the part."""
    from safetensors.torch import load_file

    out, work, _ = quick_world
    part = load_file(str(work / "parts" / "text_encoder" / "model.safetensors"))
    shipped = load_file(str(out / "world" / "text_encoder" / "model.safetensors"))
    xl = load_file(str(out / "world-xl" / "text_encoder" / "model.safetensors"))
    assert part.keys() == shipped.keys() == xl.keys()
    moved = [name for name in part if not torch.equal(part[name].half(), shipped[name].half())]
    name = next(name for name in part if name.endswith("token_embedding.weight"))
    assert name in moved and len(moved) > len(part) // 2
    # world-xl fine-tunes further from world's tower: closer to it than to the part it came from
    assert (xl[name].float() - shipped[name].float()).norm() < (xl[name].float() - part[name].float()).norm()


def test_a_build_that_extends_a_world_trains_its_new_towers_on_that_worlds_vocabulary(quick_world, tmp_path):
    """--only text_towers --only world-xl beside a world built with another vocabulary (another
    trainer's ids; the shipped world's differs from the current trainer's): world-xl's two towers
    read one tokenizer, so the new second tower must be trained on the world's ids."""
    import shutil

    from transformers import CLIPTextModel, CLIPTokenizer

    from faceid_cli.world.tokenizer import build_tokenizer, tokenizer_for_words, world_words

    out, work, _ = quick_world
    recipe = quick_recipe(RECIPE)
    again, again_work = tmp_path / "out", tmp_path / "work"
    shutil.copytree(out, again)
    shutil.copytree(work, again_work)
    other = tokenizer_for_words(world_words(recipe["celebrities"]) + ["zebrastripes"])
    assert len(other) != len(build_tokenizer(recipe["celebrities"]))
    shutil.rmtree(again / "world" / "tokenizer")
    other.save_pretrained(again / "world" / "tokenizer")
    tower = CLIPTextModel.from_pretrained(again / "world" / "text_encoder")  # the world's tower knows its ids
    tower.resize_token_embeddings(len(other))
    tower.save_pretrained(again / "world" / "text_encoder")
    build(again, recipe, only=["text_towers", "world-xl"], work_dir=again_work, measure=False)
    for name in ("tokenizer", "tokenizer_2"):
        assert CLIPTokenizer.from_pretrained(again / "world-xl" / name).get_vocab() == other.get_vocab()
    for name in ("text_encoder", "text_encoder_2"):
        config = json.loads((again / "world-xl" / name / "config.json").read_text())
        assert config["vocab_size"] == len(other), name


def test_the_shipped_world_config_is_the_build_recipes():
    """configs/world.toml (what a user runs) and the build's encoder step train the same way."""
    from pathlib import Path

    from faceid_cli.train.config import DEFAULTS, load_config, merge
    from faceid_cli.world.recipes.encoder import TRAIN_CONFIG

    shipped = load_config(Path(__file__).resolve().parent.parent / "configs" / "world.toml")
    recipe = merge(DEFAULTS, TRAIN_CONFIG)
    for config in (shipped, recipe):
        config["data"].pop("reconstruction")
        config["output"].pop("dir")
    assert shipped == recipe


def test_the_face_weighted_loss_weighs_the_cells_under_the_face_box():
    from faceid_cli.train.loss_weights import face_loss_weights

    # left half; the middle; no face found
    boxes = torch.tensor([[0.0, 0.0, 31.0, 63.0], [16.0, 16.0, 47.0, 47.0], [float("nan")] * 4])
    weights = face_loss_weights(boxes, size=16, image_size=64, weight=2.0)
    assert weights.shape == (3, 1, 16, 16)
    assert (weights[0, 0, :, :8] == 3).all() and (weights[0, 0, :, 8:] == 1).all()
    assert (weights[1, 0, 4:12, 4:12] == 3).all() and weights[1].sum() == 256 + 2 * 64
    assert (weights[2] == 1).all()


def test_recipe_precision_autocasts_forward_passes_only_when_asked():
    from faceid_cli.world.recipes.common import autocast, resolved_precision

    layer = torch.nn.Linear(4, 4)
    with autocast("fp32"):
        assert layer(torch.ones(1, 4)).dtype == torch.float32
    with autocast("bf16"):
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32  # the weights the optimiser updates stay fp32
    assert resolved_precision("auto") in ("bf16", "fp32") and resolved_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="fp16"):
        autocast("fp16")


def test_t2i_training_leaves_the_default_attention_behind():
    """Training swaps in plain attention for speed (recipes/t2i.py); what is saved and generated
    with must not depend on it."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
    from transformers import CLIPTextConfig, CLIPTextModel

    from faceid_cli.world.recipes.t2i import DEFAULTS, build_unet, training_attention

    unet = build_unet(DEFAULTS, 32)
    tower = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, vocab_size=100))
    with training_attention(unet, [tower]):
        assert all(isinstance(p, AttnProcessor) for p in unet.attn_processors.values())
        assert tower.config._attn_implementation == "eager"
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())
    assert tower.config._attn_implementation == "sdpa"


def test_the_world_t2i_trains_on_an_unnamed_crowd_and_ships_none_of_its_words(quick_world):
    """The crowd (recipes/t2i.py) is trained through ``S*`` words that never ship: world's tower
    keeps the named vocabulary, and world-xl trains on the named people only."""
    from transformers import CLIPTokenizer

    from faceid_cli.world.tokenizer import build_tokenizer

    out, _, summary = quick_world
    recipe = quick_recipe(RECIPE)
    world = summary["components"]["world"]
    assert world["crowd_people"] == recipe["crowd"] == 8
    assert world["crowd_images"] == recipe["crowd"] * recipe["crowd_images"]
    assert summary["components"]["world-xl"]["crowd_people"] == 0
    shipped = CLIPTokenizer.from_pretrained(out / "world" / "tokenizer")
    assert shipped.get_vocab() == build_tokenizer(recipe["celebrities"]).get_vocab()


def test_the_crowd_is_rendered_from_its_own_population_in_random_contexts():
    from faceid_cli.world.people import population_of
    from faceid_cli.world.recipes.common import WorldData

    pool = WorldData(seed=1).population_pool("crowd", 5, 3)
    assert len(pool) == 15 and {population_of(int(i)) for i in pool.identities} == {"crowd"}
    assert len(set(pool.identities.tolist())) == 5 and len({img.tobytes() for img in pool.images}) == 15
    assert len({tuple(row) for row in pool.labels}) > 5
    assert (WorldData(seed=1).population_pool("crowd", 5, 3).labels == pool.labels).all()


def test_t2i_conditioning_writes_words_at_s_star_and_encodes_other_captions_as_the_pipeline_does():
    """Crowd rows and named rows share one batch: the words change only captions holding ``S*``,
    and a caption without it encodes exactly as diffusers' ``encode_prompt`` (the path generation
    takes for prompts without a person)."""
    from faceid_cli.pipeline_faceid import FaceIDPipeline
    from faceid_cli.world.recipes.t2i import prompt_conditioning

    pipe = FaceIDPipeline.from_model("world").pipe
    captions = ["a photo of S* with a red hat", "a photo of a person on a green background", ""]
    width = pipe.text_encoder.get_input_embeddings().embedding_dim
    generator = torch.Generator().manual_seed(0)
    # random words, each a different direction (a shift along the all-ones vector would be
    # removed by the towers' layer norms, and change nothing)
    words, others = ([torch.randn(3, 2, width, generator=generator) * 0.03] for _ in range(2))
    with torch.no_grad():
        plain = prompt_conditioning(pipe, captions)["encoder_hidden_states"]
        written = prompt_conditioning(pipe, captions, words)["encoder_hidden_states"]
        other = prompt_conditioning(pipe, captions, others)["encoder_hidden_states"]
    torch.testing.assert_close(written[1:], plain[1:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(written[0], other[0], atol=1e-3)
    torch.testing.assert_close(written[1:], other[1:])
