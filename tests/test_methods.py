"""Methods as one registered concept: every --method is a module behind one interface, and identity
files written before methods were modules still load and give the same images."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import DATA
from tests.helpers import run_cli

OLD_IDENTITIES = DATA / "identity-v1"


@pytest.mark.parametrize("model", ["tiny", "tiny-xl"])
def test_m2_identity_files_from_before_the_methods_refactor_give_the_same_images(model, tmp_path):
    # written by `faceid encode faces/obama.jpg --model MODEL --backend dlib` and
    # `faceid generate FILE "S* as a chef" --model MODEL --seed 7 --steps 3` before the refactor
    from PIL import Image

    out = tmp_path / "out.png"
    result = run_cli("generate", str(OLD_IDENTITIES / f"{model}-m2.safetensors"), "S* as a chef", "--model", model,
                     "--seed", "7", "--steps", "3", "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    made = sorted(tmp_path.glob("*.png"))
    assert len(made) == 1
    expected = np.asarray(Image.open(OLD_IDENTITIES / f"{model}-m2-seed7.png").convert("RGB")).astype(int)
    image = np.asarray(Image.open(made[0]).convert("RGB")).astype(int)
    assert image.shape == expected.shape
    assert np.abs(image - expected).max() <= 1


def test_every_method_name_has_its_module_and_every_module_its_name():
    from faceid_cli.methods import METHOD_MODULES, get_method
    from faceid_cli.names import METHODS

    assert set(METHODS) == set(METHOD_MODULES)
    for name in METHODS:
        method = get_method(name)
        assert method.name == name and method.summary
        assert method.uses_identity == (name != "none")


def test_a_negative_branch_is_kept_only_by_the_method_that_builds_it():
    """batch's and evaluate's --text-negative apply to every job: other methods drop it, so their
    images do not record a setting that did not change them; the default branch is not recorded."""
    from faceid_cli.errors import InvalidArgumentError
    from faceid_cli.pipeline_faceid import FaceIDPipeline

    pipe = FaceIDPipeline.from_model("tiny", method="m2", method_options={"negative": "text"})
    assert pipe.method_options == {} and "method_options" not in pipe.describe()
    xl = FaceIDPipeline.from_model("tiny-xl", method="faceclip", method_options={"negative": "text"})
    assert xl.method_options == {"negative": "text"}
    assert FaceIDPipeline(xl.pipe, xl.encoder, model_name="tiny-xl", method="faceclip",
                          method_options={"negative": "release"}).method_options == {}
    with pytest.raises(InvalidArgumentError, match="'black' is not one of release, text"):
        FaceIDPipeline(xl.pipe, xl.encoder, model_name="tiny-xl", method="faceclip", method_options={"negative": "black"})


def test_an_unknown_method_is_one_clear_error():
    result = run_cli("generate", str(DATA / "faces" / "obama.jpg"), "S* as a chef", "--method", "dreambooth")
    assert result.exit_code == 2
    assert "dreambooth" in result.stderr and "faceclip" in result.stderr


def test_evaluate_pairs_each_checkpoint_with_the_method_of_its_kind(tmp_path):
    import json

    from faceid_cli.evaluate.run import Variant, variants_from

    m2 = tmp_path / "runs" / "m2" / "encoder"
    faceclip = tmp_path / "runs" / "faceclip" / "encoder"
    for folder, kind in ((m2, "m2"), (faceclip, "faceclip")):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"encoder_type": kind}))
    release = tmp_path / "face_clip_encoder.pt"
    release.write_bytes(b"")
    assert variants_from(["m2", "faceclip", "none"], [str(m2), str(faceclip)]) == [
        Variant("m2", "m2", str(m2)), Variant("faceclip", "faceclip", str(faceclip)), Variant("none", "none")]
    both = variants_from(["faceclip"], [str(faceclip), str(release)])
    assert [v.encoder for v in both] == [str(faceclip), str(release)] and len({v.label for v in both}) == 2
    # several negative branches make a column each of faceclip, and leave other methods alone
    branches = variants_from(["m2", "faceclip"], [str(m2), str(faceclip)], negatives=["release", "text"])
    assert [(v.label, v.negative) for v in branches] == [
        ("m2", None), ("faceclip@release-negative", "release"), ("faceclip@text-negative", "text")]
    assert [v.negative for v in variants_from(["faceclip"], [str(faceclip)], negatives=["text"])] == ["text"]
    # a run's folder, or one of its checkpoints, is told by the encoder inside it
    for folder in (m2, faceclip):
        (folder / "model.safetensors").write_bytes(b"")
    step = tmp_path / "runs" / "faceclip" / "checkpoints" / "step-0000002"
    (step / "encoder").mkdir(parents=True)
    (step / "complete.json").write_text("{}")
    (step / "encoder" / "model.safetensors").write_bytes(b"")
    (step / "encoder" / "config.json").write_text(json.dumps({"encoder_type": "faceclip"}))
    runs = [str(tmp_path / "runs" / "m2"), str(step)]
    assert variants_from(["m2", "faceclip"], runs) == [Variant("m2", "m2", runs[0]), Variant("faceclip", "faceclip", runs[1])]
