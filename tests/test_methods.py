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
