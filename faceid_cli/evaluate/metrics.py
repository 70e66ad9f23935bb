"""The papers' metrics, one function each (the same signature style throughout: inputs in, numbers
out, nothing written).

- *Face similarity*: the cosine of identity embeddings between the reference face and the largest
  face in a generated image; None when the image has no face (counted in the no-face rate, never
  dropped silently). Embeddings come from the face backend in use (ArcFace via insightface, dlib,
  or the world's recogniser); numbers from different backends are not comparable.
- *Text alignment* ("CLIP-T"): the cosine of CLIP image and text embeddings, with ``S*`` replaced
  by a neutral word, as DreamIdentity reports it.
- *Means with 95% bootstrap intervals*: percentile bootstrap over images, seeded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..conditioning import DEFAULT_IDENTITY_TOKEN, NEUTRAL_SUBJECT, replace_identity


def reference_embedding(analyzer, image, face_index: int = 0, source: str = "reference") -> np.ndarray:
    """The identity embedding of the reference photo's face (largest first, or ``face_index``)."""
    from ..faces.face import select_face

    face = select_face(analyzer.detect(image), face_index, source)
    return analyzer.embed(image, face)


def largest_face_embedding(analyzer, image) -> np.ndarray | None:
    """The identity embedding of the largest face of ``image``; None if it has no face."""
    faces = analyzer.detect(image)
    return analyzer.embed(image, faces[0]) if faces else None


def similarity_to(embedding: np.ndarray | None, reference: np.ndarray) -> float | None:
    """Cosine between an image's face ``embedding`` and ``reference``; None where it had no face."""
    from ..faces.face import cosine_similarity

    return None if embedding is None else float(cosine_similarity(embedding, reference))


def face_similarity(analyzer, image, reference: np.ndarray) -> float | None:
    """Cosine between ``reference`` and the largest face of ``image``; None if it has no face."""
    return similarity_to(largest_face_embedding(analyzer, image), reference)


def text_alignment(scorer, images: Sequence, prompts: Sequence[str], token: str = DEFAULT_IDENTITY_TOKEN,
                   neutral: str = NEUTRAL_SUBJECT) -> list[float]:
    """CLIP image-text cosine of each image with its prompt, ``token`` replaced by ``neutral``."""
    texts = [replace_identity(prompt, token, neutral) for prompt in prompts]
    return [float(v) for v in scorer.score(list(images), texts)]


def bootstrap_mean(values: Sequence[float], confidence: float = 0.95, resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its percentile-bootstrap interval. NaN for no values; a
    single value has a zero-width interval."""
    data = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if data.size == 0:
        return float("nan"), float("nan"), float("nan")
    if data.size == 1:
        return float(data[0]), float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    return float(data.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


#: the world's context figures (:mod:`.world_check`), summarised where images carry them
CONTEXT_FIGURES = ("context", "context_copied")
#: figures only some evaluations take, summarised where images carry them: face similarity to
#: further photos of the person (``--identity-photos``), and the world's context figures
OPTIONAL_FIGURES = ("identity_similarity", *CONTEXT_FIGURES)


def summarise(rows: Sequence[dict], key: str, seed: int = 0) -> list[dict]:
    """Per value of ``rows[i][key]`` (a method, checkpoint, prompt or identity): text alignment,
    face similarity over images with a face, the same counting a faceless image as 0 (the strict
    figure), the no-face rate, the mean encode time and, where taken, the face similarity to further
    photos of the person and the world's context figures; each mean with its 95% interval."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    out = []
    for value, members in groups.items():
        similarities = [r["face_similarity"] for r in members]
        found = [s for s in similarities if s is not None]
        entry = {key: value, "images": len(members),
                 "no_face_rate": 1.0 - len(found) / len(members)}
        for name, values in (("text_alignment", [r.get("text_alignment") for r in members]),
                             ("face_similarity", found),
                             ("face_similarity_strict", [0.0 if s is None else s for s in similarities])):
            mean, low, high = bootstrap_mean([v for v in values if v is not None], seed=seed)
            entry[name] = {"mean": mean, "low": low, "high": high}
        for name in OPTIONAL_FIGURES:  # where it was taken
            values = [r[name] for r in members if r.get(name) is not None]
            if any(name in r for r in members):
                mean, low, high = bootstrap_mean(values, seed=seed)
                entry[name] = {"mean": mean, "low": low, "high": high}
        encode = [r["encode_seconds"] for r in members if r.get("encode_seconds") is not None]
        entry["encode_seconds"] = float(np.mean(encode)) if encode else None
        out.append(entry)
    return out
