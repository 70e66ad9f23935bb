"""The world's measuring instruments and the figures they give.

:class:`Judges` holds the world's detector, recogniser and context classifier (and, when asked,
its CLIP). Every figure of the world's quality is computed here, so the build summary, the
benchmark and the tests report the same numbers the same way:

- identity: verification of unseen people (ROC AUC, best accuracy and its threshold), top-1
  identification among the celebrities;
- context: the classifier's accuracy per attribute against what was asked;
- the obey/copy measure of the editability failure: on prompts whose context conflicts with the
  reference's, how often the image shows what was asked and how often the reference's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import component_path
from .contexts import ATTRIBUTE_NAMES, ATTRIBUTES, Context
from .data import Pool, align_batch



@dataclass
class Judges:
    recogniser: torch.nn.Module
    detector: torch.nn.Module
    classifier: torch.nn.Module
    presence_threshold: float = 0.5
    _clip: tuple | None = field(default=None, repr=False)

    @classmethod
    def load(cls, root: Path | None = None) -> Judges:
        from .nets import WorldNet

        return cls(recogniser=WorldNet.from_pretrained(component_path("recogniser", root)),
                   detector=WorldNet.from_pretrained(component_path("detector", root)),
                   classifier=WorldNet.from_pretrained(component_path("classifier", root)))

    @torch.inference_mode()
    def embed_renders(self, pool: Pool, batch_size: int = 512) -> torch.Tensor:
        """Embeddings of renders from their ground-truth landmarks."""
        out = []
        for start in range(0, len(pool), batch_size):
            index = slice(start, start + batch_size)
            crops = align_batch(pool.image_tensor(index), torch.from_numpy(pool.landmarks[index]).double(),
                                self.recogniser.config["crop_size"])
            out.append(self.recogniser(crops))
        return torch.cat(out)

    @torch.inference_mode()
    def analyse(self, images: torch.Tensor) -> dict:
        """Detect, embed and read the context of images (B, 3, 64, 64) in [0, 1].

        ``face``: (B,) bool; ``embeddings``: (B, D), zero where no face; ``context``: attribute →
        (B,) predicted class index.
        """
        logit, _, landmarks = self.detector(images)
        face = torch.sigmoid(logit) >= self.presence_threshold
        crops = align_batch(images, landmarks.double(), self.recogniser.config["crop_size"])
        embeddings = self.recogniser(crops) * face[:, None]
        context = {name: logits.argmax(-1) for name, logits in self.classifier(images).items()}
        return {"face": face, "embeddings": embeddings, "context": context}

    @torch.inference_mode()
    def classify(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: logits.argmax(-1) for name, logits in self.classifier(images).items()}


def images_to_tensor(images: Sequence) -> torch.Tensor:
    """PIL images → (B, 3, H, W) floats in [0, 1]."""
    return torch.stack([torch.from_numpy(np.asarray(i.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
                        for i in images])


def verification(embeddings: torch.Tensor, identities: Sequence[int]) -> dict:
    """How well cosine similarity separates same from different people, over all pairs."""
    ids = torch.as_tensor(np.asarray(identities))
    similarity = embeddings @ embeddings.T
    same = ids[:, None] == ids[None, :]
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    positives = similarity[same & upper].double().numpy()
    negatives = similarity[~same & upper].double().numpy()
    values = np.concatenate([positives, negatives])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    auc = (ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2) / (len(positives) * len(negatives))
    thresholds = np.linspace(-1, 1, 2001)
    accuracy = [((positives >= t).mean() + (negatives < t).mean()) / 2 for t in thresholds]
    best = int(np.argmax(accuracy))
    return {"auc": float(auc), "accuracy": float(accuracy[best]), "threshold": float(thresholds[best]),
            "same_mean": float(positives.mean()), "different_mean": float(negatives.mean()),
            "pairs_same": len(positives), "pairs_different": len(negatives)}


def context_accuracy(predicted: dict[str, torch.Tensor], asked: Sequence[dict[str, str]]) -> dict[str, float]:
    """Per attribute: the share of images showing what their prompt asked (where it asked)."""
    scores = {}
    for name in ATTRIBUTE_NAMES:
        rows = [(i, a[name]) for i, a in enumerate(asked) if name in a]
        if rows:
            hits = [int(predicted[name][i]) == ATTRIBUTES[name].index(value) for i, value in rows]
            scores[name] = float(np.mean(hits))
    return scores


def obey_or_copy(asked: Sequence[dict[str, str]], references: Sequence[Context],
                 predicted: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """The editability measure. Per attribute, over prompts whose asked value differs from the
    reference photo's: ``obeyed`` (the image shows the asked value), ``copied`` (it shows the
    reference's value instead), ``other``, and ``count``."""
    out = {}
    for name in ATTRIBUTE_NAMES:
        outcomes = []
        for i, (a, reference) in enumerate(zip(asked, references)):
            if name not in a or a[name] == getattr(reference, name):
                continue
            shown = ATTRIBUTES[name][int(predicted[name][i])]
            outcomes.append("obeyed" if shown == a[name] else "copied" if shown == getattr(reference, name) else "other")
        if outcomes:
            out[name] = {k: outcomes.count(k) / len(outcomes) for k in ("obeyed", "copied", "other")}
            out[name]["count"] = len(outcomes)
    return out


def identify(embeddings: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """Index of the most similar gallery identity for every embedding."""
    return (embeddings @ torch.nn.functional.normalize(gallery, dim=-1).T).argmax(-1)


def gallery_from_pool(judges: Judges, pool: Pool, order: Sequence[int]) -> torch.Tensor:
    """Mean embedding of each identity in ``order`` over its renders in ``pool``."""
    embeddings = judges.embed_renders(pool)
    ids = np.asarray(pool.identities)
    return torch.stack([torch.nn.functional.normalize(embeddings[ids == i].mean(0), dim=0) for i in order])


def summarise_generation(judges: Judges, images: torch.Tensor, asked: Sequence[dict[str, str]],
                         targets: Sequence[int], gallery: torch.Tensor) -> dict:
    """Identity top-1 (faces not found count as wrong), no-face rate and context accuracy."""
    analysis = judges.analyse(images)
    picked = identify(analysis["embeddings"], gallery)
    correct = (picked == torch.as_tensor(np.asarray(targets))) & analysis["face"]
    return {"identity_top1": float(correct.float().mean()), "no_face_rate": float((~analysis["face"]).float().mean()),
            "context": context_accuracy(analysis["context"], asked), "images": len(images)}


@torch.inference_mode()
def generate(pipe, prompts: Sequence[str], seeds: Sequence[int], steps: int = 30, guidance: float = 5.0,
             batch_size: int = 32) -> torch.Tensor:
    """Render prompts with a diffusers pipeline (one CPU generator per image) as (B, 3, H, W)."""
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start:start + batch_size])
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds[start:start + batch_size]]
        result = pipe(prompt=chunk, generator=generators, num_inference_steps=steps, guidance_scale=guidance,
                      output_type="pt")
        out.append(result.images.float().cpu())
    return torch.cat(out)


# ---- the world's figures -------------------------------------------------------------------------
def held_out_renders(identities: int, per_identity: int, seed: int) -> Pool:
    """Fresh renders of held-out people (no model of the world trained on any of them)."""
    from .data import jobs_for, render_pool
    from .people import population_seeds

    return render_pool(jobs_for(population_seeds("held_out", identities), per_identity, seed))


def recogniser_quality(judges: Judges, pool: Pool) -> dict:
    """Verification of unseen people overall, and across headwear: same person with a hat
    against without, compared with different people."""
    embeddings = judges.embed_renders(pool)
    overall = verification(embeddings, pool.identities)
    hat = pool.labels[:, ATTRIBUTE_NAMES.index("hat")] > 0
    ids = torch.as_tensor(pool.identities)
    similarity = embeddings @ embeddings.T
    cross = torch.as_tensor(hat[:, None] != hat[None, :])
    same = ids[:, None] == ids[None, :]
    threshold = overall["threshold"]
    hat_same = similarity[same & cross]
    different = similarity[~same]
    overall["hat_vs_no_hat"] = {
        "same_mean": float(hat_same.mean()), "accepted": float((hat_same >= threshold).float().mean()),
        "different_rejected": float((different < threshold).float().mean()),
    }
    return overall


def classifier_quality(judges: Judges, pool: Pool) -> dict[str, float]:
    predicted = judges.classify(pool.image_tensor())
    return {name: float((predicted[name].numpy() == pool.labels[:, i]).mean()) for i, name in enumerate(ATTRIBUTE_NAMES)}


@torch.inference_mode()
def detector_quality(judges: Judges, pool: Pool, negatives: np.ndarray) -> dict:
    logit, box, landmarks = judges.detector(pool.image_tensor())
    found = torch.sigmoid(logit) >= judges.presence_threshold
    error = (landmarks - torch.from_numpy(pool.landmarks)).norm(dim=-1).mean(-1)
    negative_logit, _, _ = judges.detector(torch.from_numpy(negatives).permute(0, 3, 1, 2).float() / 255)
    return {"detection_rate": float(found.float().mean()), "landmark_error_px": float(error.mean()),
            "false_positive_rate": float((torch.sigmoid(negative_logit) >= judges.presence_threshold).float().mean())}


@torch.inference_mode()
def clip_quality(clip_dir: Path, pool: Pool) -> dict:
    """Whether the world's CLIP ranks each render's own full caption first among every context's."""
    from ..evaluate.clip_scorer import ClipScorer
    from .contexts import all_contexts, caption

    scorer = ClipScorer.from_pretrained(str(clip_dir))
    contexts = all_contexts()
    texts = [caption(c) for c in contexts]
    images = [pool_image(pool, i) for i in range(len(pool))]
    similarity = scorer.similarity_matrix(images, texts)
    truth = [contexts.index(pool.contexts(i)) for i in range(len(pool))]
    top1 = (similarity.argmax(1).numpy() == np.array(truth)).mean()
    rank_in_batch = (similarity[:, truth].argmax(1).numpy() == np.arange(len(pool)))
    return {"top1_among_all_contexts": float(top1), "candidates": len(texts),
            "top1_within_batch": float(rank_in_batch.mean())}


def pool_image(pool: Pool, index: int):
    from PIL import Image

    return Image.fromarray(pool.images[index])


#: sample sizes of the build's measurement (the benchmark passes larger ones)
MEASURE_SIZES = {"identities": 200, "per_identity": 4, "prompts": 200, "steps": 30, "guidance": 5.0,
                 "negatives": 500}


def t2i_quality(pipe, judges: Judges, count: int, prompts: int, seed: int, steps: int, guidance: float) -> dict:
    """Identity top-1 among the celebrities and context accuracy, on prompts naming a celebrity
    with a (background, hat) pair it never saw in training; the floor is the same prompts with
    "a person" for the name."""
    from .celebrities import celebrities, held_out_contexts
    from .contexts import caption

    people = celebrities(count)
    cases = held_out_contexts(count, prompts, seed)
    gallery_pool = _celebrity_gallery_pool(people, seed)
    gallery = gallery_from_pool(judges, gallery_pool, [s for s, _ in people])
    seeds = [seed + i for i in range(len(cases))]
    asked = [context.to_dict() for _, context in cases]
    targets = [index for index, _ in cases]
    named = generate(pipe, [caption(c, people[i][1]) for i, c in cases], seeds, steps, guidance)
    result = summarise_generation(judges, named, asked, targets, gallery)
    floor = generate(pipe, [caption(c) for _, c in cases], seeds, steps, guidance)
    floor_result = summarise_generation(judges, floor, asked, targets, gallery)
    result["floor"] = {"identity_top1": floor_result["identity_top1"], "context": floor_result["context"]}
    # the ceiling: real renders of the same people in the same contexts, judged the same way
    from .render import render_sample

    real = images_to_tensor([render_sample(people[i][0], seed + k, context=c).image for k, (i, c) in enumerate(cases)])
    ceiling = summarise_generation(judges, real, asked, targets, gallery)
    result["ceiling"] = {"identity_top1": ceiling["identity_top1"], "context": ceiling["context"]}
    result["chance_top1"] = 1 / count
    return result


def _celebrity_gallery_pool(people, seed: int, per: int = 8) -> Pool:
    from .data import jobs_for, render_pool

    return render_pool(jobs_for([s for s, _ in people], per, seed + 17))


def measure_world(root: Path, recipe: dict, report=None, sizes: dict | None = None) -> dict:
    """Every figure of the world's quality, with the sample sizes used."""
    from diffusers import DiffusionPipeline

    from .render import render_negative

    sizes = {**MEASURE_SIZES, **(sizes or {})}
    log = report.log if report else (lambda message: None)
    seed = int(recipe["seed"]) + 77
    judges = Judges.load(root)
    out: dict = {"sizes": sizes}
    renders = held_out_renders(sizes["identities"], sizes["per_identity"], seed)
    out["recogniser"] = recogniser_quality(judges, renders)
    log(f"recogniser: verification {out['recogniser']['accuracy']:.4f}, AUC {out['recogniser']['auc']:.4f}")
    out["classifier"] = classifier_quality(judges, renders)
    log("classifier: " + ", ".join(f"{k} {v:.3f}" for k, v in out["classifier"].items()))
    negatives = np.stack([np.asarray(render_negative(seed * 7919 + i)) for i in range(sizes["negatives"])])
    out["detector"] = detector_quality(judges, renders, negatives)
    if (root / "clip").is_dir():
        out["clip"] = clip_quality(root / "clip", renders)
        log(f"clip: top-1 among all contexts {out['clip']['top1_among_all_contexts']:.3f}")
    for name in ("world", "world-xl"):
        folder = root / name
        if folder.is_dir():
            pipe = DiffusionPipeline.from_pretrained(folder, dtype=torch.float32)
            pipe.set_progress_bar_config(disable=True)
            out[name] = t2i_quality(pipe, judges, recipe["celebrities"], sizes["prompts"], seed, sizes["steps"],
                                    sizes["guidance"])
            log(f"{name}: identity top-1 {out[name]['identity_top1']:.3f}, context "
                + ", ".join(f"{k} {v:.3f}" for k, v in out[name]["context"].items()))
    return out


def format_quality(quality: dict) -> str:
    """The figures as a few human lines."""
    lines = []
    rec = quality.get("recogniser")
    if rec:
        lines.append(f"recogniser  verification {rec['accuracy']:.4f} (AUC {rec['auc']:.4f}, threshold "
                     f"{rec['threshold']:.3f}); same person {rec['same_mean']:.3f}, different {rec['different_mean']:.3f}; "
                     f"hat vs none accepted {rec['hat_vs_no_hat']['accepted']:.3f}")
    if "classifier" in quality:
        lines.append("classifier  " + ", ".join(f"{k} {v:.3f}" for k, v in quality["classifier"].items()))
    if "detector" in quality:
        d = quality["detector"]
        lines.append(f"detector    found {d['detection_rate']:.3f}, false positives {d['false_positive_rate']:.3f}, "
                     f"landmark error {d['landmark_error_px']:.2f} px")
    if "clip" in quality:
        c = quality["clip"]
        lines.append(f"clip        right caption first: {c['top1_among_all_contexts']:.3f} among {c['candidates']} "
                     f"contexts, {c['top1_within_batch']:.3f} within the batch")
    for name in ("world", "world-xl"):
        if name in quality:
            q = quality[name]
            lines.append(f"{name:<11} identity top-1 {q['identity_top1']:.3f} (ceiling {q['ceiling']['identity_top1']:.3f}, "
                         f"floor {q['floor']['identity_top1']:.3f}, chance {q['chance_top1']:.3f}), no face "
                         f"{q['no_face_rate']:.3f}; context " + ", ".join(f"{k} {v:.3f}" for k, v in q["context"].items()))
    return "\n".join(lines)
