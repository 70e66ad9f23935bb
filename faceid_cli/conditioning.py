"""Pseudo-word conditioning: ``S*`` in a prompt stands for the encoder's k words.

The text encoders and tokenizers are not changed. The prompt is tokenized around each ``S*``, and k
placeholder positions are left where it stood; while the text encoder runs, a forward hook on its
input-embedding table writes the encoder's words into those positions. The placeholder positions
carry the start-of-text id, which every CLIP pooling rule (argmax of ids, or first end-of-text)
ignores, so the pooled output still comes from the real end-of-text token. The result goes to the
diffusers pipeline as ``prompt_embeds`` (and ``pooled_prompt_embeds`` for SDXL), exactly what its
own ``encode_prompt`` would have produced for an ordinary prompt.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .errors import InvalidArgumentError
from .names import GENERATION_DEFAULTS

DEFAULT_IDENTITY_TOKEN = GENERATION_DEFAULTS["identity_token"]
NEUTRAL_SUBJECT = "a person"
logger = logging.getLogger(__name__)


def count_identity_tokens(prompt: str, token: str = DEFAULT_IDENTITY_TOKEN) -> int:
    return prompt.count(token) if token else 0


def replace_identity(prompt: str, token: str = DEFAULT_IDENTITY_TOKEN, word: str = NEUTRAL_SUBJECT) -> str:
    """The prompt with every ``S*`` replaced by a neutral word (the ``none`` method, CLIP-T)."""
    return re.sub(r"\s+", " ", prompt.replace(token, word)).strip()


def check_identity_prompt(prompt: str, token: str, append_identity: bool) -> str:
    """The prompt to use: it must mention ``S*`` unless ``--append-identity`` adds "photo of S*"."""
    if not prompt.strip():
        raise InvalidArgumentError("the prompt is empty", f"write what to generate, e.g. '{token} as a chef'")
    if count_identity_tokens(prompt, token):
        return prompt
    if append_identity:
        return f"{prompt.rstrip(' ,.')}, photo of {token}"
    raise InvalidArgumentError(
        f"the prompt {prompt!r} does not mention the person ({token})",
        f"write {token} where the person goes, e.g. '{token} as a chef', or pass --append-identity",
    )


@dataclass(frozen=True)
class TokenizedPrompt:
    """Token ids for one text encoder, and which word (0..k-1) goes at each position (-1: none)."""

    input_ids: torch.Tensor  # (L,) long
    slots: torch.Tensor  # (L,) long
    truncated: bool


def tokenize_with_identity(tokenizer, prompt: str, num_words: int, token: str = DEFAULT_IDENTITY_TOKEN) -> TokenizedPrompt:
    """Tokenize ``prompt`` with ``num_words`` placeholder positions for every ``token``.

    Each text segment between placeholders is tokenized on its own; CLIP splits words before BPE,
    so these ids are the ids the segment has inside the whole prompt.
    """
    max_length = tokenizer.model_max_length
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    ids, slots = [], []
    segments = prompt.split(token) if token else [prompt]
    for index, segment in enumerate(segments):
        if segment.strip():
            segment_ids = tokenizer(segment, add_special_tokens=False).input_ids
            ids += segment_ids
            slots += [-1] * len(segment_ids)
        if index < len(segments) - 1:
            ids += [bos] * num_words  # stand-ins: replaced by the words, ignored by pooling
            slots += list(range(num_words))
    room = max_length - 2
    truncated = len(ids) > room
    if truncated:
        ids, slots = ids[:room], slots[:room]
    ids = [bos] + ids + [eos]
    slots = [-1] + slots + [-1]
    ids += [pad] * (max_length - len(ids))
    slots += [-1] * (max_length - len(slots))
    return TokenizedPrompt(torch.tensor(ids, dtype=torch.long), torch.tensor(slots, dtype=torch.long), truncated)


@contextmanager
def injected_words(text_encoder, slots: torch.Tensor, words: torch.Tensor):
    """While active, the text encoder's input embeddings at ``slots >= 0`` are ``words[slot]``.

    ``slots``: (B, L) long; ``words``: (B, k, D) in the text encoder's embedding width. Gradients
    flow into ``words`` (training uses the same path).
    """
    embedding = text_encoder.get_input_embeddings()
    if words.shape[-1] != embedding.embedding_dim:
        raise InvalidArgumentError(
            f"identity words are {words.shape[-1]} wide but this text encoder takes {embedding.embedding_dim}",
            "use an encoder or identity file made for this base model family",
        )

    def replace(module, inputs, output):
        mask = (slots >= 0).to(output.device)
        index = slots.clamp(min=0).to(output.device)[..., None].expand(-1, -1, output.shape[-1])
        chosen = torch.gather(words.to(device=output.device, dtype=output.dtype), 1, index)
        return torch.where(mask[..., None], chosen, output)

    handle = embedding.register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


@dataclass
class PromptEmbeds:
    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None
    truncated: bool = False

    def as_kwargs(self) -> dict:
        kwargs = {"prompt_embeds": self.prompt_embeds}
        if self.pooled_prompt_embeds is not None:
            kwargs["pooled_prompt_embeds"] = self.pooled_prompt_embeds
        return kwargs


def encode_plain_prompts(pipe, prompts: list[str]) -> PromptEmbeds:
    """What the pipeline's own ``encode_prompt`` makes of ordinary ``prompts`` (no identity words,
    no guidance branch): SD's ``prompt_embeds``, or SDXL's and its pooled embeddings."""
    device = pipe.text_encoder.device if pipe.text_encoder is not None else pipe.unet.device
    if getattr(pipe, "text_encoder_2", None) is None:
        embeds, _ = pipe.encode_prompt(prompts, device, 1, do_classifier_free_guidance=False)
        return PromptEmbeds(embeds)
    embeds, _, pooled, _ = pipe.encode_prompt(prompts, device=device, num_images_per_prompt=1,
                                             do_classifier_free_guidance=False)
    return PromptEmbeds(embeds, pooled)


def text_towers(pipe) -> list[tuple]:
    """(tokenizer, text_encoder) pairs of an SD (one) or SDXL (two) pipeline."""
    towers = [(pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        towers.append((pipe.tokenizer_2, pipe.text_encoder_2))
    return [(tok, enc) for tok, enc in towers if enc is not None]


def word_dims_of(pipe) -> tuple[int, ...]:
    """Input-embedding width of each text encoder: what identity words must match."""
    return tuple(enc.get_input_embeddings().embedding_dim for _, enc in text_towers(pipe))


def prompt_states(encoder, input_ids: torch.Tensor, xl: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What diffusers' ``encode_prompt`` takes from one text encoder: SD the last hidden state; SDXL
    the penultimate one, and the projected pooled text where the encoder gives it (SDXL's second)."""
    output = encoder(input_ids, output_hidden_states=xl)
    if not xl:
        return output[0], None
    return output.hidden_states[-2], output[0] if output[0].ndim == 2 else None


def encode_prompt_with_identity(
    pipe, prompt: str | list[str], words: list[torch.Tensor], token: str = DEFAULT_IDENTITY_TOKEN
) -> PromptEmbeds:
    """``prompt_embeds`` (and SDXL's pooled embeddings) for ``prompt`` with ``S*`` = ``words``.

    ``words``: one (k, D_i) or (B, k, D_i) tensor per text encoder. ``prompt``: one prompt for
    every row of ``words``, or a list with one prompt per row (training batches mix captions; each
    text encoder still runs once). Mirrors diffusers' ``encode_prompt``: SD takes the last hidden
    state; SDXL the penultimate hidden state of both towers, concatenated, and the projected pooled
    output of the second.
    """
    towers = text_towers(pipe)
    if len(words) != len(towers):
        raise InvalidArgumentError(
            f"the identity has words for {len(words)} text encoder(s), the model has {len(towers)}",
            "use an identity made for this base model family (SD vs SDXL)",
        )
    is_xl = len(towers) == 2 or getattr(pipe, "text_encoder_2", None) is not None
    hidden, pooled, truncated = [], None, False
    for (tokenizer, encoder), tower_words in zip(towers, words):
        if tower_words.ndim == 2:
            tower_words = tower_words[None]
        rows = tower_words.shape[0]
        prompts = [prompt] * rows if isinstance(prompt, str) else list(prompt)
        if len(prompts) != rows:
            raise InvalidArgumentError(f"{len(prompts)} prompts for {rows} rows of identity words",
                                       "give one prompt, or one per row")
        tokens = [tokenize_with_identity(tokenizer, text, tower_words.shape[1], token) for text in prompts]
        truncated |= any(t.truncated for t in tokens)
        device = encoder.device
        ids = torch.stack([t.input_ids for t in tokens]).to(device)
        slots = torch.stack([t.slots for t in tokens])
        with injected_words(encoder, slots, tower_words):
            states, tower_pooled = prompt_states(encoder, ids, is_xl)
        hidden.append(states)
        pooled = tower_pooled if tower_pooled is not None else pooled
    if truncated:
        logger.warning("a prompt is longer than %d tokens and was truncated: %r",
                       towers[0][0].model_max_length, prompt)
    dtype = towers[-1][1].dtype
    return PromptEmbeds(torch.cat(hidden, dim=-1).to(dtype), pooled, truncated)
