"""The world's CLIP tokenizer: byte-level BPE trained on the world's own words.

Trained by :func:`train_merges` (deterministic BPE), on words normalised and pre-tokenised by
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


def train_merges(words: list[str]) -> list[tuple[str, str]]:
    """BPE merges that make each of ``words`` one token, in rank order: the most frequent adjacent
    pair is merged first, ties going to the pair that sorts first.

    Written here rather than with the ``tokenizers`` library's ``BpeTrainer``, because that trainer
    breaks ties between equally frequent pairs in an order that changes from one process to the next
    (two builds of the same words gave 6 of 943 token ids swapped), and every world word occurs
    once, so ties are everywhere: a build must give the same ids every time, since its text towers
    are trained in one process and fine-tuned in another. Words are first normalised and
    pre-tokenised exactly as ``CLIPTokenizer`` does, so the merges apply as trained.
    """
    from collections import Counter

    from transformers import CLIPTokenizer

    backend = CLIPTokenizer(vocab={BOS: 0, EOS: 1}, merges=[]).backend_tokenizer
    pieces: Counter = Counter()
    for word in sorted(set(words)):
        for piece, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(word)):
            pieces[tuple(piece[:-1]) + (piece[-1] + "</w>",)] += 1
    symbols = {piece: list(piece) for piece in pieces}
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter = Counter()
        for piece, count in pieces.items():
            parts = symbols[piece]
            for pair in zip(parts, parts[1:]):
                pairs[pair] += count
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        joined = best[0] + best[1]
        for piece, parts in symbols.items():
            i, out = 0, []
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            symbols[piece] = out


def tokenizer_for_words(words: list[str], max_length: int = MAX_LENGTH):
    """A ``CLIPTokenizer`` whose vocabulary holds each of ``words`` whole (deterministic)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    merges = train_merges(words)
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
