"""``--method none``: ``S*`` becomes a neutral word; the base model with no identity, the floor that
every comparison reports against."""

from __future__ import annotations

from collections.abc import Sequence

from ..conditioning import PromptEmbeds
from .base import Method


class NoIdentityMethod(Method):
    name = "none"
    encoder_type = None
    summary = "no identity: S* becomes 'a person' (the floor comparisons report against)"

    def prompt_embeds(self, pipe, encoder, identities: Sequence, prompts: Sequence[str], token: str) -> PromptEmbeds:
        raise NotImplementedError("method 'none' renders plain prompts")


METHOD = NoIdentityMethod()
