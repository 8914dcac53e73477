"""A quick classifier's ONNX file, put together from frozen backbone files and its head.

Quick mode never changes a backbone, so the exported file is assembled from the backbone
graphs the trainer already keeps in its cache (image → pooled features, each exported once),
and a small head graph: no re-export and no torch forward pass per version. The same assembly
with quantized backbones is the INT8 variant.

    image ─┬──────────────┐                       (flip: the image and its mirror image as one batch)
           └─ mirror ─────┴─ concat ─ member 1 ─ mean of the two views ─┐
                                    └ member 2 ─ mean of the two views ─┴─ side by side ─ [sqrt] ─ head ─ outputs

(sqrt: the candidate reads the square roots of the pooled features, `selection.Candidate.root`.)

A member graph takes the file's input as it is: an ensemble member smaller than the input size
resizes inside its own graph (`feature_sets.Resized`), so its features in training were computed
by the same graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import compose, helper, numpy_helper

INPUT_NAME = "image"
FEATURES_NAME = "features"


def _constant(name: str, values: Sequence[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def compose_classifier(members: Sequence[Path], head: Path, target: Path, *, flip: bool, root: bool = False,
                       input_name: str = INPUT_NAME) -> Path:
    """Write to `target` the classifier made of the member backbone files (one input: the image; one
    output: pooled features [N, D]) and the head file (input: the members' features side by side, or their
    square roots with `root`: clipped at 0 first, as `selection.root_features` does)."""
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    value_info: list[onnx.ValueInfoProto] = []
    opsets: dict[str, int] = {}
    ir_version = 0
    loaded = [onnx.load(str(path)) for path in members]
    first_input = loaded[0].graph.input[0]
    source = input_name
    if flip:
        initializers += [_constant("mirror/starts", [-1]), _constant("mirror/ends", [np.iinfo(np.int64).min]),
                         _constant("mirror/axes", [3]), _constant("mirror/steps", [-1])]
        nodes += [helper.make_node("Slice", [input_name, "mirror/starts", "mirror/ends", "mirror/axes",
                                             "mirror/steps"], ["mirror/image"], name="mirror/slice"),
                  helper.make_node("Concat", [input_name, "mirror/image"], ["views"], axis=0, name="views/concat")]
        source = "views"
    pooled: list[str] = []
    for index, model in enumerate(loaded):
        prefix = f"member{index}/"
        model = compose.add_prefix(model, prefix)
        graph = model.graph
        own_input, own_output = graph.input[0].name, graph.output[0].name
        for node in graph.node:
            node.input[:] = [source if name == own_input else name for name in node.input]
        nodes += list(graph.node)
        initializers += list(graph.initializer)
        value_info += list(graph.value_info)
        output = own_output
        if flip:
            width = graph.output[0].type.tensor_type.shape.dim[1].dim_value
            initializers.append(_constant(f"{prefix}views/shape", [2, -1, width]))
            nodes += [helper.make_node("Reshape", [own_output, f"{prefix}views/shape"], [f"{prefix}views/split"],
                                       name=f"{prefix}views/reshape"),
                      helper.make_node("ReduceMean", [f"{prefix}views/split"], [f"{prefix}views/mean"], axes=[0],
                                       keepdims=0, name=f"{prefix}views/mean")]
            output = f"{prefix}views/mean"
        pooled.append(output)
        for opset in model.opset_import:
            opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
        ir_version = max(ir_version, model.ir_version)
    side_by_side = "features/members" if root else FEATURES_NAME
    if len(pooled) == 1:
        nodes.append(helper.make_node("Identity", pooled, [side_by_side], name="features/identity"))
    else:
        nodes.append(helper.make_node("Concat", pooled, [side_by_side], axis=1, name="features/concat"))
    if root:
        nodes += [helper.make_node("Relu", [side_by_side], ["features/clipped"], name="features/clip"),
                  helper.make_node("Sqrt", ["features/clipped"], [FEATURES_NAME], name="features/sqrt")]
    head_model = compose.add_prefix(onnx.load(str(head)), "head/", rename_outputs=False)
    head_graph = head_model.graph
    head_input = head_graph.input[0].name
    for node in head_graph.node:
        node.input[:] = [FEATURES_NAME if name == head_input else name for name in node.input]
    nodes += list(head_graph.node)
    initializers += list(head_graph.initializer)
    value_info += list(head_graph.value_info)
    for opset in head_model.opset_import:
        opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    image = helper.make_tensor_value_info(input_name, first_input.type.tensor_type.elem_type,
                                          [d.dim_param or d.dim_value for d in first_input.type.tensor_type.shape.dim])
    graph = helper.make_graph(nodes, "visiondock-classifier", [image], list(head_graph.output),
                              initializer=initializers, value_info=value_info)
    merged = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, version)
                                                     for domain, version in sorted(opsets.items())],
                               producer_name="visiondock-trainer")
    merged.ir_version = max(ir_version, head_model.ir_version)
    onnx.checker.check_model(merged)
    onnx.save(merged, str(target))
    return target
