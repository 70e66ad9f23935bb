"""What a method is: how it gets its encoder, what an identity file stores, and how it turns
(identity, prompt) pairs into the pipeline's prompt embeddings.

Two kinds exist today. *Word* methods (m2, clip-image) write the face into the text towers' input
embeddings as k pseudo-words (:mod:`.words`). FaceCLIP's prompt embeddings depend on the prompt as
a whole, so its identities store face features (the identity vector and patch tokens) and it
encodes each prompt with them (:mod:`.faceclip`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..conditioning import PromptEmbeds
from ..errors import InvalidArgumentError, MissingModelError


class Method:
    #: the ``--method`` name
    name: str = ""
    #: the ``encoder_type`` of the checkpoints it loads (None: it uses no encoder)
    encoder_type: str | None = None
    #: one line for ``--help`` and ``faceid models``
    summary: str = ""
    #: the module of ``faceid train``'s functions for this method (build, trainable_groups,
    #: training_loss, save_trained, clip_for, set_train_mode), or None when it cannot be trained
    training_module: str | None = None
    #: the negative branches it can build (``--text-negative`` picks "text"; the first is its default)
    negative_branches: tuple[str, ...] = ()

    def training(self):
        """``faceid train``'s functions for this method."""
        from importlib import import_module

        if self.training_module is None:
            from ..names import TRAINABLE_METHODS

            raise InvalidArgumentError(f"faceid train cannot train --method {self.name}",
                                       f"set model.method to one of: {', '.join(TRAINABLE_METHODS)}")
        return import_module(self.training_module)

    @property
    def uses_identity(self) -> bool:
        return self.encoder_type is not None

    # --- encoders -------------------------------------------------------------------------------
    def random_encoder(self, model_location: str, dims: tuple[int, ...]):
        """The seeded random encoder the tiny models use (no checkpoint needed)."""
        raise NotImplementedError

    def locate_encoder(self, source) -> Path:
        """Where the checkpoint ``source`` (as the user gave it) is: an encoder folder or file, or a
        training run's folder or checkpoint (its encoder); the one-line error if nowhere."""
        from ..train.layout import trained_encoder

        path = Path(source)
        if not path.exists():
            raise MissingModelError(f"encoder checkpoint '{source}' not found", "check the --encoder path")
        return trained_encoder(path)

    def load_encoder(self, path):
        from ..encoders import load_encoder

        return load_encoder(path)

    def prepare_pipeline(self, pipe, encoder) -> None:
        """Anything the method changes in the base pipeline once both are loaded (FaceCLIP's
        release swaps in its fine-tuned UNet)."""

    def check_encoder(self, encoder, dims: tuple[int, ...] | None, source) -> None:
        """The encoder must be this method's kind and fit a model whose text towers are ``dims`` wide."""
        from ..identity import family_of

        if encoder.encoder_type != self.encoder_type:
            raise InvalidArgumentError(
                f"encoder '{source}' is a {encoder.encoder_type} encoder but --method is {self.name}",
                f"pass --method {encoder.encoder_type}",
            )
        if dims is not None and tuple(encoder.word_dims) != tuple(dims):
            raise InvalidArgumentError(
                f"encoder '{source}' makes {self.name} conditioning for {family_of(encoder.word_dims)} "
                f"{list(encoder.word_dims)} but the model is {family_of(dims)} {list(dims)}",
                "use an encoder trained for this base model",
            )

    # --- identities -----------------------------------------------------------------------------
    def identity_tensors(self, encoder, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """Aligned, preprocessed crops (N, 3, S, S) of one person → the tensors an identity file
        stores (several photos are fused here)."""
        raise NotImplementedError

    # --- conditioning ---------------------------------------------------------------------------
    def prompt_embeds(self, pipe, encoder, identities: Sequence, prompts: Sequence[str], token: str) -> PromptEmbeds:
        """Embeddings for one (identity, prompt) pair per row, batched."""
        raise NotImplementedError

    def negative_embeds(self, pipe, encoder, negative_prompts: Sequence[str], options: dict) -> PromptEmbeds | None:
        """The unconditional branch, or None to let the pipeline encode ``negative_prompt`` itself."""
        return None

    def neutral_embeds(self, pipe, encoder, prompts: Sequence[str], token: str) -> PromptEmbeds:
        """The prompts with no person in them (``S*`` read as a neutral subject), in the embedding
        space the method's own prompt embeddings live in: what the steps before ``identity_start``
        are drawn from. Word methods write into the base's text towers, so the base encodes them."""
        from ..conditioning import encode_plain_prompts, replace_identity

        return encode_plain_prompts(pipe, [replace_identity(p, token) for p in prompts])
