"""The world's CLIP tokenizer: byte-level BPE trained on the world's own words.

Built with the ``tokenizers`` library's BPE trainer, using the normaliser and pre-tokeniser of
transformers' ``CLIPTokenizer``, so the result is an ordinary CLIP vocabulary (``vocab.json`` +
``merges.txt``): every word of the context grammar and every celebrity's first and last name is
one token, any other text still tokenises (down to bytes), and the end-of-text token has the
largest id, as in OpenAI's vocabulary.
"""

from __future__ import annotations

from .contexts import vocabulary
from .people import celebrity_names

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: the world's prompts are at most ~25 tokens; a 32-token context (CLIP's is 77) makes every
#: cross-attention of the text-to-image models 2.4x cheaper
MAX_LENGTH = 32


def world_words(num_celebrities: int) -> list[str]:
    """Every word the world's captions use: the context grammar and the celebrities' names."""
    words = set(vocabulary())
    for name in celebrity_names(num_celebrities):
        words.update(name.lower().split())
    return sorted(words)


def build_tokenizer(num_celebrities: int):
    """A ``CLIPTokenizer`` whose vocabulary holds every world word whole (deterministic)."""
    return tokenizer_for_words(world_words(num_celebrities))


def tokenizer_for_words(words: list[str], max_length: int = MAX_LENGTH):
    """A ``CLIPTokenizer`` whose vocabulary holds each of ``words`` whole (deterministic)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    # the same normaliser and pre-tokeniser as CLIPTokenizer, so trained merges apply as trained
    reference = CLIPTokenizer(vocab={BOS: 0, EOS: 1}, merges=[])
    backend = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token=EOS))
    backend.normalizer = reference.backend_tokenizer.normalizer
    backend.pre_tokenizer = reference.backend_tokenizer.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=100_000, min_frequency=1, show_progress=False, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), end_of_word_suffix="</w>",
    )
    backend.train_from_iterator(sorted(set(words)), trainer=trainer)
    import json

    state = json.loads(backend.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    # every byte alone and at a word's end, then the merged tokens, then start and end of text
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = alphabet + [c + "</w>" for c in alphabet]
    tokens += ["".join(m) for m in merges]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
