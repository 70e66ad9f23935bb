"""Word methods: the face becomes k pseudo-words in the text towers' input embedding space, which
the prompt's ``S*`` stands for (:mod:`faceid_cli.conditioning`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..conditioning import PromptEmbeds, encode_prompt_with_identity
from .base import Method


class WordMethod(Method):
    def identity_tensors(self, encoder, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        features = encoder.features(crops)
        fused = features.float().mean(dim=0, keepdim=True)
        words = encoder.words_from_features(fused)[0]
        tensors = {f"words.{i}": w.float().cpu().clone() for i, w in enumerate(encoder.split_words(words))}
        tensors["features"] = fused[0].float().cpu().clone()
        return tensors

    def prompt_embeds(self, pipe, encoder, identities: Sequence, prompts: Sequence[str], token: str) -> PromptEmbeds:
        device = pipe.unet.device
        towers = len(identities[0].words)
        words = [torch.stack([identity.words[i] for identity in identities]).to(device) for i in range(towers)]
        return encode_prompt_with_identity(pipe, list(prompts), words, token)
