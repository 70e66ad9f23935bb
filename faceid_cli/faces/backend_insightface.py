"""insightface backend: SCRFD detection and ArcFace embeddings from a local model pack, run by
the ``insightface`` package itself.

The packs (``antelopev2``: SCRFD-10G + glint360k R100, used by InstantID and PuLID;
``buffalo_l``: SCRFD-10G + webface600k R50) are ONNX files. faceid reads them from
``$FACEID_INSIGHTFACE_ROOT`` (default ``~/.insightface/models``, insightface's own folder, so an
existing install is found) and never downloads: the files are checked before insightface is
asked, and each is loaded with ``insightface.model_zoo.get_model(path)``, which reads a local file
and fetches nothing. Decoding, suppression, the recogniser's input normalisation (including the
mxnet-converted models that normalise inside the graph) and ``norm_crop`` are insightface's own, so
faces and embeddings equal ``FaceAnalysis.get``'s. faceid adds only what insightface lacks: its
Face record, the largest-first order, and one-line errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import INSIGHTFACE_ROOT_ENV
from ..errors import BackendUnavailableError, MissingModelError
from .analyzer import FaceAnalyzer, downscale_for_detection
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
        found = find_pack(root, pack)  # before insightface is asked: it would try to download
        if found is None:
            raise missing_pack_error(root, pack)
        try:
            import onnxruntime
            from insightface.model_zoo import get_model
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the insightface backend needs the insightface package ({exc})", "run 'pip install insightface'"
            ) from None
        self.pack = found
        if providers is None:
            available = onnxruntime.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self._detector = _load_model(get_model, found.detector, providers)
        self._recognizer = _load_model(get_model, found.recognizer, providers)
        if getattr(self._detector, "taskname", None) != "detection" or not getattr(self._detector, "use_kps", False):
            raise MissingModelError(
                f"'{found.detector}' is not an SCRFD detector with keypoints",
                "use scrfd_10g_bnkps.onnx or det_10g.onnx from a standard pack",
            )
        if getattr(self._recognizer, "taskname", None) != "recognition":
            raise MissingModelError(
                f"'{found.recognizer}' is not an ArcFace recogniser",
                "use glintr100.onnx or w600k_r50.onnx from a standard pack",
            )
        context = 0 if providers and providers[0] == "CUDAExecutionProvider" else -1
        self._detector.prepare(context, input_size=(detection_size, detection_size), det_thresh=score_threshold,
                               nms_thresh=nms_threshold)
        self._recognizer.prepare(context)
        self.detection_input = tuple(self._detector.input_size)
        self.crop_size = int(self._recognizer.input_size[0])
        out_dim = self._recognizer.output_shape[-1]
        self.embedding_dim = out_dim if isinstance(out_dim, int) else 512

    @property
    def description(self) -> str:
        return f"insightface ({self.pack.name} from {self.pack.folder})"

    def detect(self, image: Image.Image) -> list[Face]:
        # insightface shrinks to its input with OpenCV's resize, which does not antialias: a photo
        # many times the detector's input is first shrunk, antialiased, to twice that input
        small, scale = downscale_for_detection(image, 2 * max(self.detection_input))
        boxes, points = self._detector.detect(_bgr(small), input_size=self.detection_input)
        faces = [
            Face(bbox=tuple(float(v) / scale for v in box[:4]), score=float(box[4]),
                 landmarks=np.asarray(kps, dtype=np.float64) / scale)
            for box, kps in zip(boxes, points)
        ]
        return sort_largest_first(faces)

    def embed(self, image: Image.Image, face: Face) -> np.ndarray:
        # insightface aligns with norm_crop on the detector's float32 keypoints
        import warnings

        holder = _Keypoints(np.asarray(face.landmarks, dtype=np.float32))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # norm_crop's call of a deprecated scikit-image API
            embedding = self._recognizer.get(_bgr(image), holder)
        return l2_normalize(np.asarray(embedding, dtype=np.float32))


class _Keypoints:
    """The one attribute of insightface's Face that its recogniser reads (and the one it writes)."""

    def __init__(self, kps: np.ndarray):
        self.kps = kps
        self.embedding = None


def _bgr(image: Image.Image) -> np.ndarray:
    """insightface takes OpenCV's BGR uint8 arrays."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def _load_model(get_model, path: Path, providers: list[str]):
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # insightface's own deprecation noise
            model = get_model(str(path), providers=providers)
    except Exception as exc:  # onnxruntime and onnx raise their own untyped errors for bad files
        raise MissingModelError(
            f"cannot load the insightface pack in {path.parent}: {exc}",
            "the .onnx files are damaged; copy them again",
        ) from None
    if model is None:
        raise MissingModelError(f"'{path}' is neither a face detector nor a recogniser insightface knows",
                                "use the files of a standard pack")
    return model
