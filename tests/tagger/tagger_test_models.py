"""Build small WD-shaped ONNX taggers: NHWC float32 in, sigmoid scores from the mean colour out."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# (name, category, weight on mean B, G, R in 0..1, bias): every tag's logit is w·bgr + bias, so
# red, green and blue images get different tags while some tags sit at fixed scores.
WD_TAGS = [
    ("general", 9, (0, 4, 0), -1.0),
    ("sensitive", 9, (0, 0, 4), -1.0),
    ("questionable", 9, (0, 0, 0), -2.0),
    ("explicit", 9, (0, 0, 0), -3.0),
    ("red_theme", 0, (0, 0, 12), -6.0),
    ("blue_theme", 0, (12, 0, 0), -6.0),
    ("green_theme", 0, (0, 12, 0), -6.0),
    ("solo", 0, (0, 0, 0), 2.2),  # 0.90 on every image
    ("^_^", 0, (0, 0, 0), 0.4),  # 0.60
    ("looking_at_viewer", 0, (0, 0, 0), 0.0),  # 0.50
    ("hatsune_miku", 4, (12, 0, 0), -6.0),
    ("kiana_(honkai)", 4, (0, 0, 8), -4.0),
]
# e621's vocabulary: no rating rows, species (5) and e621 characters (4).
Z3D_TAGS = [
    ("anthro", 0, (0, 0, 0), 2.0),
    ("canine", 5, (0, 0, 12), -6.0),
    ("feline", 5, (12, 0, 0), -6.0),
    ("krystal", 4, (12, 0, 0), -6.0),
    ("solo", 0, (0, 0, 0), 1.0),
]

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)
WD_INPUT, WD_OUTPUT = "input_1:0", "predictions_sigmoid"  # the names in the WD v1.4 ONNX files
V3_INPUT, V3_OUTPUT = "input", "output"


@dataclass
class TinyTagger:
    folder: Path
    tags: list
    size: int

    def probs(self, rgb: tuple[int, int, int]) -> dict[str, float]:
        """What the model outputs for a flat image of this colour (for assertions)."""
        bgr = np.array(rgb[::-1], dtype=np.float64) / 255.0
        return {name: float(1 / (1 + np.exp(-(np.dot(w, bgr) + b)))) for name, _, w, b in self.tags}


def build_tagger(
    folder: Path,
    *,
    batch: int | None = None,
    size: int = 32,
    tags=None,
    csv_name: str = "selected_tags.csv",
    input_name: str = WD_INPUT,
    output_name: str = WD_OUTPUT,
    nchw: bool = False,
    header: tuple[str, ...] = ("tag_id", "name", "category", "count"),
) -> TinyTagger:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    tags = tags or WD_TAGS
    folder.mkdir(parents=True, exist_ok=True)
    n = len(tags)
    weights = np.array([t[2] for t in tags], dtype=np.float32).T  # [3, n] over B, G, R
    bias = np.array([t[3] for t in tags], dtype=np.float32)
    bdim = batch if batch else "batch"
    shape = [bdim, 3, size, size] if nchw else [bdim, size, size, 3]
    axes = [2, 3] if nchw else [1, 2]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=axes, keepdims=0),
        helper.make_node("Mul", ["mean", "scale"], ["unit"]),
        helper.make_node("MatMul", ["unit", "W"], ["logits0"]),
        helper.make_node("Add", ["logits0", "B"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_tagger",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [bdim, n])],
        initializer=[
            numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "scale"),
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(bias, "B"),
        ],
    )
    # The input keeps the real model's name ("input_1:0" has a colon, legal in ONNX names).
    graph.input[0].name = input_name
    graph.node[0].input[0] = input_name
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    with open(folder / csv_name, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, (name, category, _, _) in enumerate(tags):
            row = {"tag_id": 1000 + i, "name": name, "category": category, "count": 100 - i}
            w.writerow([row[h] for h in header])
    return TinyTagger(folder=folder, tags=tags, size=size)
