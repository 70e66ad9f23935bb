"""Rendered pools for training the world's models, and batched face alignment in torch.

A :class:`Pool` is a set of renders held as arrays (images, identity seeds, context labels, face
boxes, landmarks), made by several processes and cached on disk, so every recipe that needs
"2000 people × 16 images" renders them once. :func:`align_batch` warps a batch to the ArcFace
template with the same similarity transform as :func:`faceid_cli.faces.align_face` (bicubic
sampling, pixel centres at integers, black outside), so models trained on its crops see at inference
the crops that ``align_face`` makes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..faces.alignment import arcface_template
from .contexts import ATTRIBUTES, Context
from .render import SIZE, random_pose, render

FIELDS = ("images", "identities", "labels", "landmarks", "bboxes")


@dataclass
class Pool:
    images: np.ndarray  # (N, 64, 64, 3) uint8
    identities: np.ndarray  # (N,) int64 identity seeds
    labels: np.ndarray  # (N, len(ATTRIBUTES)) int64 context class indices
    landmarks: np.ndarray  # (N, 5, 2) float32
    bboxes: np.ndarray  # (N, 4) float32

    def __len__(self) -> int:
        return len(self.images)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{name: getattr(self, name) for name in FIELDS})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Pool:
        with np.load(path) as data:
            return cls(**{name: data[name] for name in FIELDS})

    def image_tensor(self, index=slice(None)) -> torch.Tensor:
        """Images as (B, 3, 64, 64) floats in [0, 1]."""
        return torch.from_numpy(self.images[index]).permute(0, 3, 1, 2).float() / 255.0

    def contexts(self, index: int) -> Context:
        return Context.from_labels(dict(zip(ATTRIBUTES, self.labels[index])))


def concatenate_pools(pools: Sequence[Pool]) -> Pool:
    """One pool holding every image of ``pools``, in order."""
    return Pool(**{name: np.concatenate([getattr(pool, name) for pool in pools]) for name in FIELDS})


@dataclass(frozen=True)
class RenderJob:
    identity: int
    image_seed: int
    labels: tuple[int, ...] | None = None  # a fixed context, or None for a random one


def _render_job(job: RenderJob):
    rng = np.random.default_rng(np.random.SeedSequence([0x1A, job.image_seed]))
    if job.labels is None:
        labels = tuple(int(rng.integers(len(values))) for values in ATTRIBUTES.values())
    else:
        labels = job.labels
    context = Context.from_labels(dict(zip(ATTRIBUTES, labels)))
    pose = random_pose(rng)
    r = render(job.identity, context, pose, noise_seed=int(rng.integers(2**31)))
    return np.asarray(r.image, dtype=np.uint8), labels, r.landmarks.astype(np.float32), np.array(r.bbox, np.float32)


def render_pool(jobs: Sequence[RenderJob], workers: int | None = None,
                progress: Callable[[int], None] | None = None) -> Pool:
    """Render every job (in order, so the pool is the same however many workers run)."""
    # a process pool pays off only for real pools (it costs about a second to start)
    workers = workers or (min(2, os.cpu_count() or 1) if len(jobs) >= 2000 else 1)
    results = []
    if workers > 1:
        with multiprocessing.get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
            for result in pool.imap(_render_job, jobs, chunksize=256):
                results.append(result)
                if progress:
                    progress(1)
    else:
        for job in jobs:
            results.append(_render_job(job))
            if progress:
                progress(1)
    return Pool(
        images=np.stack([r[0] for r in results]),
        identities=np.array([j.identity for j in jobs], dtype=np.int64),
        labels=np.array([r[1] for r in results], dtype=np.int64),
        landmarks=np.stack([r[2] for r in results]),
        bboxes=np.stack([r[3] for r in results]),
    )


def jobs_for(identities: Sequence[int], per_identity: int, seed: int) -> list[RenderJob]:
    """``per_identity`` random images of each identity; image seeds derived from ``seed``."""
    return [RenderJob(int(identity), image_seed(seed, int(identity), j))
            for identity in identities for j in range(per_identity)]


def image_seed(seed: int, identity: int, index: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{identity}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def cached_pool(cache_dir: Path | None, key: dict, jobs: Sequence[RenderJob],
                progress: Callable[[int], None] | None = None) -> Pool:
    """Render ``jobs`` once; later calls with the same ``key`` read the cached arrays."""
    if cache_dir is None:
        return render_pool(jobs, progress=progress)
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"pool-{name}.npz"
    if path.is_file():
        if progress:
            progress(len(jobs))
        return Pool.load(path)
    pool = render_pool(jobs, progress=progress)
    pool.save(path)
    return pool


# ---- alignment, batched -------------------------------------------------------------------------
def similarity_matrices(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity transforms (B, 2, 3) taking ``src`` (B, 5, 2) onto ``dst`` (5, 2).

    In 2-D the similarity x' = a x - b y + tx, y' = b x + a y + ty is linear in (a, b, tx, ty):
    its least-squares solution is Umeyama's (a similarity cannot reflect).
    """
    src = src.double()
    dst = dst.double().expand(src.shape[0], -1, -1)
    src_mean, dst_mean = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    s, d = src - src_mean, dst - dst_mean
    norm = (s**2).sum(dim=(1, 2))
    a = (s * d).sum(dim=(1, 2)) / norm
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(1) / norm
    rotation = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], 1)
    shift = dst_mean[:, 0] - (rotation @ src_mean[:, 0, :, None])[..., 0]
    return torch.cat([rotation, shift[..., None]], dim=2)


def align_batch(images: torch.Tensor, landmarks: torch.Tensor, size: int = 112, zoom: float = 1.0,
                mode: str = "bicubic") -> torch.Tensor:
    """Aligned crops (B, C, size, size) of ``images`` (B, C, H, W) from five landmarks each."""
    template = torch.as_tensor(arcface_template(size, zoom))
    matrices = similarity_matrices(landmarks, template)
    full = torch.cat([matrices, torch.tensor([0.0, 0.0, 1.0], dtype=matrices.dtype).expand(len(matrices), 1, 3)], 1)
    inverse = torch.linalg.inv(full)[:, :2]  # crop pixel → image pixel
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    grid = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(-1, 3)
    source = grid @ inverse.transpose(1, 2)  # (B, size*size, 2) in pixel coordinates
    height, width = images.shape[-2:]
    normalised = torch.stack([(2 * source[..., 0] + 1) / width - 1, (2 * source[..., 1] + 1) / height - 1], -1)
    normalised = normalised.reshape(-1, size, size, 2).to(images.dtype)
    crops = torch.nn.functional.grid_sample(images, normalised, mode=mode, padding_mode="zeros", align_corners=False)
    return crops.clamp(0, 1) if mode == "bicubic" else crops


__all__ = ["Pool", "RenderJob", "SIZE", "align_batch", "cached_pool", "jobs_for", "render_pool", "similarity_matrices"]
