"""``--method m2``: DreamIdentity's M² encoder (:mod:`faceid_cli.encoders.m2`)."""

from __future__ import annotations

from .words import WordMethod


class M2Method(WordMethod):
    name = "m2"
    encoder_type = "m2"
    summary = "DreamIdentity's M² encoder: multi-scale face-ViT features as k pseudo-words"
    training_module = "faceid_cli.train.m2"

    def random_encoder(self, model_location: str, dims: tuple[int, ...]):
        from ..encoders.m2 import build_random_m2_encoder

        return build_random_m2_encoder(dims)


METHOD = M2Method()
