"""A tiny ONNX detector with YOLO-style outputs, built with onnx.helper (no download):
constant boxes, class scores from the picture's mean brightness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

SIZE = 64  # the tiny model's input
CLASSES = ("knife", "person")
# anchors: centre x, centre y, width, height (input pixels), and per-class weights; a
# class's score is the weight times the input's mean brightness
ANCHORS = [
    ((16, 16, 16, 16), (1.0, 0.0)),  # a knife
    ((18, 16, 16, 16), (0.9, 0.0)),  # the same knife again: NMS keeps one
    ((48, 48, 8, 8), (0.0, 0.8)),  # a person
    ((48, 16, 32, 32), (0.1, 0.0)),  # too unsure to keep at all
]


def tiny_detector(path: Path, *, metadata: dict[str, str] | None = None, classes: int = 2) -> Path:
    """(N, 3, S, S) -> (N, 4 + classes, anchors): constant boxes, scores from brightness."""
    anchors = len(ANCHORS)
    boxes = np.array([a[0] for a in ANCHORS], np.float32).T[None]  # (1, 4, A)
    weights = np.zeros((1, classes, anchors), np.float32)
    weights[0, :2] = np.array([a[1] for a in ANCHORS], np.float32).T
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Reshape", ["mean", "shape"], ["mean3"]),
        helper.make_node("Mul", ["mean3", "weights"], ["scores"]),
        helper.make_node("Mul", ["mean3", "zeros"], ["nothing"]),  # the batch dimension
        helper.make_node("Add", ["nothing", "boxes"], ["placed"]),
        helper.make_node("Concat", ["placed", "scores"], ["output0"], axis=1),
    ]
    initializers = [
        helper.make_tensor("shape", TensorProto.INT64, [3], [-1, 1, 1]),
        helper.make_tensor("weights", TensorProto.FLOAT, weights.shape, weights.ravel()),
        helper.make_tensor("zeros", TensorProto.FLOAT, boxes.shape, np.zeros(boxes.size)),
        helper.make_tensor("boxes", TensorProto.FLOAT, boxes.shape, boxes.ravel()),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [
            helper.make_tensor_value_info(
                "output0", TensorProto.FLOAT, ["batch", 4 + classes, anchors]
            )
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
