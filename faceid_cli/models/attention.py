"""How the models compute attention while they train.

PyTorch's fused attention (diffusers' ``AttnProcessor2_0``, transformers' ``"sdpa"``) is the
default everywhere. On a CPU with short sequences its backward is the slow part of a step: on
the world's UNet (64 latent cells, 32 tokens, batch 64, bf16) it took 30% of a training step, and
plain matrix products made the step 0.26 s against 0.35-0.41 s. Plain attention materialises the
whole score matrix, so it is for short sequences only (a 512 px SD UNet has 4096 cells).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

#: ``train.attention``'s values: PyTorch's fused attention, or plain matrix products
ATTENTION_KINDS = ("sdpa", "eager")


@contextlib.contextmanager
def attention_kind(kind: str, unets: Sequence = (), text_encoders: Sequence = ()) -> Iterator[None]:
    """Run the block with ``kind`` attention in ``unets`` (diffusers) and ``text_encoders``
    (transformers), and put back what each had afterwards. The weights are the same either way, so
    what is saved or generated after the block does not depend on it."""
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention {kind!r}: use one of {', '.join(ATTENTION_KINDS)}")
    if kind == "sdpa":
        yield
        return
    from diffusers.models.attention_processor import AttnProcessor

    processors = [unet.attn_processors for unet in unets]
    implementations = [encoder.config._attn_implementation for encoder in text_encoders]
    for unet in unets:
        unet.set_attn_processor(AttnProcessor())
    for encoder in text_encoders:
        encoder.set_attn_implementation("eager")
    try:
        yield
    finally:
        for unet, previous in zip(unets, processors):
            unet.set_attn_processor(previous)
        for encoder, implementation in zip(text_encoders, implementations):
            encoder.set_attn_implementation(implementation)
