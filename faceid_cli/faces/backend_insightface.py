"""insightface backend: SCRFD detection and ArcFace embeddings from a local model pack.

The packs (``antelopev2``: SCRFD-10G + glint360k R100, used by InstantID and PuLID;
``buffalo_l``: SCRFD-10G + webface600k R50) are ONNX files that the ``insightface`` package would
download on first use. faceid never downloads: it reads them from
``$FACEID_INSIGHTFACE_ROOT`` (default ``~/.insightface/models``, insightface's own folder, so an
existing install is found) and runs them with onnxruntime directly. The insightface package itself
is not needed; its Python side is a thin wrapper whose model-pack loader downloads when a file is
missing, which is exactly what this tool must not do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import INSIGHTFACE_ROOT_ENV
from ..errors import BackendUnavailableError, MissingModelError
from .alignment import align_face
from .analyzer import FaceAnalyzer
from .face import Face, l2_normalize, sort_largest_first


#: known packs, in the order ``auto`` prefers them: (detector file, recogniser file)
PACKS = {
    "antelopev2": ("scrfd_10g_bnkps.onnx", "glintr100.onnx"),
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
}


def default_insightface_root() -> Path:
    raw = os.environ.get(INSIGHTFACE_ROOT_ENV)
    return Path(raw).expanduser() if raw else Path.home() / ".insightface" / "models"


@dataclass(frozen=True)
class ModelPack:
    name: str
    folder: Path
    detector: Path
    recognizer: Path


def find_pack(root: str | os.PathLike | None = None, pack: str | None = None) -> ModelPack | None:
    """The first complete pack under ``root`` (or the one named ``pack``), else None.

    Zips of antelopev2 unpack into ``antelopev2/antelopev2/``; both levels are searched.
    """
    root = Path(root).expanduser() if root else default_insightface_root()
    for name in [pack] if pack else list(PACKS):
        if name not in PACKS:
            continue
        detector, recognizer = PACKS[name]
        for folder in (root / name, root / name / name):
            if (folder / detector).is_file() and (folder / recognizer).is_file():
                return ModelPack(name, folder, folder / detector, folder / recognizer)
    return None


def missing_pack_error(root: str | os.PathLike | None, pack: str | None) -> MissingModelError:
    root = Path(root).expanduser() if root else default_insightface_root()
    names = [pack] if pack else list(PACKS)
    wanted = " or ".join(
        f"{' and '.join(PACKS[n])} in {root / n}{os.sep}" for n in names if n in PACKS
    )
    if pack and pack not in PACKS:
        return MissingModelError(
            f"unknown insightface pack '{pack}'", f"use one of: {', '.join(PACKS)}"
        )
    return MissingModelError(
        f"no insightface model pack found in {root}",
        f"put {wanted} (faceid never downloads them), point --insightface-root or "
        f"{INSIGHTFACE_ROOT_ENV} at the folder holding the pack, or use --backend dlib",
    )


class InsightFaceAnalyzer(FaceAnalyzer):
    name = "insightface"
    embedding_dim = 512
    # ArcFace cosine similarity: genuine pairs typically score 0.5-0.8, impostors below 0.2.
    same_person_threshold = 0.32

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        pack: str | None = None,
        detection_size: int = 640,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        providers: list[str] | None = None,
    ):
        try:
            import onnxruntime
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the insightface backend needs onnxruntime ({exc})", "run 'pip install onnxruntime'"
            ) from None
        found = find_pack(root, pack)
        if found is None:
            raise missing_pack_error(root, pack)
        self.pack = found
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        if providers is None:
            available = onnxruntime.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self._detector = onnxruntime.InferenceSession(
                str(found.detector), options, providers=providers
            )
            self._recognizer = onnxruntime.InferenceSession(
                str(found.recognizer), options, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise MissingModelError(
                f"cannot load the insightface pack in {found.folder}: {exc}",
                "the .onnx files are damaged; copy them again",
            ) from None
        self._det_input = self._detector.get_inputs()[0]
        height, width = self._det_input.shape[2:4]
        fixed = isinstance(height, int) and isinstance(width, int)
        self.detection_input = (width, height) if fixed else (detection_size, detection_size)
        self._det_heads = _detector_heads(self._detector, found.detector)
        rec_input = self._recognizer.get_inputs()[0]
        self._rec_input_name = rec_input.name
        self.crop_size = rec_input.shape[2] if isinstance(rec_input.shape[2], int) else 112
        out_dim = self._recognizer.get_outputs()[0].shape[-1]
        self.embedding_dim = out_dim if isinstance(out_dim, int) else 512

    @property
    def description(self) -> str:
        return f"insightface ({self.pack.name} from {self.pack.folder})"

    def detect(self, image: Image.Image) -> list[Face]:
        in_w, in_h = self.detection_input
        # Letterbox: keep the aspect ratio, pad right and bottom (SCRFD's training convention).
        ratio = min(in_w / image.width, in_h / image.height)
        new_size = (max(1, int(image.width * ratio)), max(1, int(image.height * ratio)))
        resized = np.asarray(image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=2.0))
        canvas = np.zeros((in_h, in_w, 3), dtype=np.float32)
        canvas[: new_size[1], : new_size[0]] = resized
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outputs = self._detector.run(None, {self._det_input.name: blob})
        boxes, scores, points = self._decode(outputs, in_w, in_h)
        keep = _nms(boxes, scores, self.nms_threshold)
        faces = [
            Face(
                bbox=tuple(float(v) for v in boxes[i] / ratio),
                score=float(scores[i]),
                landmarks=points[i] / ratio,
            )
            for i in keep
        ]
        return sort_largest_first(faces)

    def _decode(self, outputs, in_w: int, in_h: int):
        boxes, scores, points = [], [], []
        for stride, anchors, (score_i, box_i, kps_i) in self._det_heads:
            score = outputs[score_i].reshape(-1)
            rows, cols = -(-in_h // stride), -(-in_w // stride)
            if score.size != rows * cols * anchors:
                rows, cols = in_h // stride, in_w // stride
            if score.size != rows * cols * anchors:
                raise MissingModelError(
                    f"the detector {self.pack.detector} gave {score.size} scores at stride {stride} "
                    f"for a {in_w}x{in_h} input",
                    "it is not an SCRFD model with keypoints; use a standard pack",
                )
            ys, xs = np.mgrid[:rows, :cols]
            centres = np.repeat(np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride, anchors, axis=0)
            keep = np.nonzero(score >= self.score_threshold)[0]
            if keep.size == 0:
                continue
            centres = centres[keep].astype(np.float32)
            deltas = outputs[box_i].reshape(-1, 4)[keep] * stride
            offsets = outputs[kps_i].reshape(-1, 10)[keep] * stride
            boxes.append(np.hstack([centres - deltas[:, :2], centres + deltas[:, 2:]]))
            points.append(centres[:, None, :] + offsets.reshape(-1, 5, 2))
            scores.append(score[keep])
        if not boxes:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)

    def embed(self, image: Image.Image, face: Face) -> np.ndarray:
        crop = np.asarray(align_face(image, face.landmarks, self.crop_size), dtype=np.float32)
        blob = ((crop - 127.5) / 127.5).transpose(2, 0, 1)[None]
        return l2_normalize(self._recognizer.run(None, {self._rec_input_name: blob})[0])


def _detector_heads(session, path: Path) -> list[tuple[int, int, tuple[int, int, int]]]:
    """(stride, anchors per cell, (score, box, keypoint) output indices) for each SCRFD level.

    Outputs are matched by their last dimension (1 score, 4 box distances, 10 keypoint offsets)
    rather than by position; within a group, the level with the most anchors (stride 8) comes
    first where shapes are static, else the export's order (the same in every known export).
    """
    outputs = session.get_outputs()
    by_width: dict[int, list[int]] = {1: [], 4: [], 10: []}
    for index, output in enumerate(outputs):
        width = output.shape[-1] if len(output.shape) >= 2 else None
        if width in by_width:
            by_width[width].append(index)
    levels = len(by_width[1])
    if levels not in (3, 5) or len(by_width[4]) != levels or len(by_width[10]) != levels:
        raise MissingModelError(
            f"'{path}' is not an SCRFD detector with keypoints "
            f"(outputs: {[tuple(o.shape) for o in outputs]})",
            "use scrfd_10g_bnkps.onnx or det_10g.onnx from a standard pack",
        )
    for group in by_width.values():
        group.sort(key=lambda i: -_anchor_count(outputs[i].shape))  # stable: symbolic keep order
    strides = (8, 16, 32) if levels == 3 else (8, 16, 32, 64, 128)
    anchors = 2 if levels == 3 else 1
    return [
        (stride, anchors, (by_width[1][i], by_width[4][i], by_width[10][i]))
        for i, stride in enumerate(strides)
    ]


def _anchor_count(shape) -> int:
    count = shape[-2] if len(shape) >= 2 else None
    return count if isinstance(count, int) else 0


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy non-maximum suppression; indices of kept boxes, best first."""
    order = np.argsort(-scores)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        iou = inter / (areas[best] + areas[rest] - inter + 1e-9)
        order = rest[iou <= threshold]
    return keep
