"""``--method clip-image``: the paper's baseline, one word from a CLIP image encoder's last layer."""

from __future__ import annotations

from .words import WordMethod


class ClipImageMethod(WordMethod):
    name = "clip-image"
    encoder_type = "clip-image"
    summary = "the paper's baseline: one pseudo-word from CLIP's last-layer image feature"
    training_module = "faceid_cli.train.clip_image"

    def random_encoder(self, model_location: str, dims: tuple[int, ...]):
        from ..encoders.clip_image import build_random_clip_image_encoder

        return build_random_clip_image_encoder(dims)


METHOD = ClipImageMethod()
