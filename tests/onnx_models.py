"""Small ONNX graphs with the input and output signatures of insightface's packs.

The detector answers every 640x640 input with the same planted detections (SCRFD's nine heads:
scores, box distances and keypoint offsets for strides 8, 16 and 32, two anchors per cell), so the
tests know exactly which boxes, landmarks and suppressions the decoder must produce. The recogniser
is a real function of its input: 14x14 average pooling and a fixed random projection to 512-D.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

INPUT = 640
STRIDES = (8, 16, 32)
ANCHORS = 2


@dataclass(frozen=True)
class PlantedFace:
    stride: int
    col: int
    row: int
    anchor: int
    score: float
    distances: tuple[float, float, float, float]  # left, top, right, bottom in input pixels
    keypoints: tuple[tuple[float, float], ...]  # five offsets from the anchor centre, input px

    @property
    def centre(self):
        return np.array([self.col * self.stride, self.row * self.stride], dtype=np.float64)

    def box_in_input(self):
        l, t, r, b = self.distances
        cx, cy = self.centre
        return np.array([cx - l, cy - t, cx + r, cy + b])

    def keypoints_in_input(self):
        return self.centre + np.array(self.keypoints)


FACE_OFFSETS = ((-15.0, -10.0), (15.0, -10.0), (0.0, 8.0), (-12.0, 28.0), (12.0, 28.0))
PLANTED = (
    # the big face, and a near-duplicate of it that NMS must remove
    PlantedFace(16, 20, 12, 0, 0.95, (40.0, 50.0, 40.0, 60.0), FACE_OFFSETS),
    PlantedFace(16, 20, 12, 1, 0.90, (42.0, 48.0, 41.0, 58.0), FACE_OFFSETS),
    # a smaller face elsewhere
    PlantedFace(8, 60, 40, 1, 0.70, (16.0, 18.0, 16.0, 22.0),
                tuple((x / 2, y / 2) for x, y in FACE_OFFSETS)),
    # below the 0.5 score threshold: must be dropped
    PlantedFace(32, 4, 4, 0, 0.30, (30.0, 30.0, 30.0, 30.0), FACE_OFFSETS),
)


def _head_values():
    heads = {}
    for stride in STRIDES:
        cells = (INPUT // stride) ** 2 * ANCHORS
        scores = np.full((cells, 1), 0.01, np.float32)
        boxes = np.ones((cells, 4), np.float32)
        kps = np.zeros((cells, 10), np.float32)
        for face in PLANTED:
            if face.stride != stride:
                continue
            index = (face.row * (INPUT // stride) + face.col) * ANCHORS + face.anchor
            scores[index] = face.score
            boxes[index] = np.array(face.distances) / stride
            kps[index] = np.array(face.keypoints).ravel() / stride
        heads[stride] = (scores, boxes, kps)
    return heads


def build_detector(path: Path, *, dynamic_input: bool = False, batched: bool = False) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, 3, "height", "width"] if dynamic_input else [1, 3, INPUT, INPUT]
    inputs = [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, shape)]
    nodes = [helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    initializers = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outputs = []
    heads = _head_values()
    order = [(kind, stride) for kind in range(3) for stride in STRIDES]  # the exports' order
    for kind, stride in order:
        value = heads[stride][kind]
        if batched:
            value = value[None]
        name = f"{('score', 'bbox', 'kps')[kind]}_{stride}"
        initializers.append(numpy_helper.from_array(value, f"{name}_const"))
        nodes.append(helper.make_node("Add", [f"{name}_const", "nothing"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, "scrfd_like", inputs, outputs, initializers)
    return _save(graph, path)


def _save(graph, path: Path) -> Path:
    """A checked opset-17 model (IR 9, which onnxruntime reads) written to ``path``."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def recognizer_weights(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((3 * 8 * 8, 512)).astype(np.float32)


def build_recognizer(path: Path, seed: int = 0, normalise_inside: bool = False) -> Path:
    """``normalise_inside``: an mxnet-style export whose first nodes (named Sub and Mul) turn 0-255
    pixels into (x - 127.5) / 127.5 itself; the same function of the pixels either way."""
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])]
    outputs = [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])]
    nodes, initializers, first = [], [numpy_helper.from_array(recognizer_weights(seed), "weights")], "input.1"
    if normalise_inside:
        initializers += [numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
                         numpy_helper.from_array(np.array(1 / 127.5, np.float32), "scale")]
        nodes += [helper.make_node("Sub", ["input.1", "mean"], ["centred"], name="Sub_0"),
                  helper.make_node("Mul", ["centred", "scale"], ["normalised"], name="Mul_1")]
        first = "normalised"
    nodes += [
        helper.make_node("AveragePool", [first], ["pooled"], kernel_shape=[14, 14], strides=[14, 14]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weights"], ["683"]),
    ]
    graph = helper.make_graph(nodes, "arcface_like", inputs, outputs, initializers)
    return _save(graph, path)


def reference_embedding(crop_rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """What the recogniser must return for an aligned 112x112 RGB crop, computed in numpy."""
    x = (crop_rgb.astype(np.float32) - 127.5) / 127.5
    pooled = x.reshape(8, 14, 8, 14, 3).mean(axis=(1, 3)).transpose(2, 0, 1).reshape(-1)
    vector = pooled @ recognizer_weights(seed)
    return vector / np.linalg.norm(vector)


def build_pack(root: Path, pack: str = "buffalo_l", **detector_kwargs) -> Path:
    from faceid_cli.faces.backend_insightface import PACKS

    detector, recognizer = PACKS[pack]
    build_detector(root / pack / detector, **detector_kwargs)
    build_recognizer(root / pack / recognizer)
    return root / pack
