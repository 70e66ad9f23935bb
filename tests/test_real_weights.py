"""Real-weight runs, skipped unless pointed at local weights (nothing is ever downloaded):

    FACEID_TEST_MODEL=/path/to/sd21-base-folder-or-cached-repo-id \\
    FACEID_TEST_ENCODER=/path/to/encoder-folder  make test
"""

from __future__ import annotations

import os

import pytest

from .helpers import parse_json, run_cli

MODEL = os.environ.get("FACEID_TEST_MODEL")  # read at import: the autouse fixture clears FACEID_*
ENCODER = os.environ.get("FACEID_TEST_ENCODER")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (MODEL and ENCODER), reason="set FACEID_TEST_MODEL and FACEID_TEST_ENCODER"),
]


def test_generate_with_a_real_model_and_encoder(faces_dir, tmp_path):
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef, looking at the camera", "--model", MODEL,
                     "--encoder", ENCODER, "--seed", "0", "--json", "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    document = parse_json(result)
    from PIL import Image

    with Image.open(document["images"][0]) as image:
        assert min(image.size) >= 512
