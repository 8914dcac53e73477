from __future__ import annotations

import numpy as np

from visiondock.postprocess import box_iou, decode_detections, nms, present_tags, top_k


def test_top_k_is_sorted_most_probable_first() -> None:
    best = top_k(np.array([0.1, 0.6, 0.3]), ["a", "b", "c"], 2)
    assert [(s.label, round(s.probability, 2)) for s in best] == [("b", 0.6), ("c", 0.3)]


def test_present_tags_use_each_tags_own_threshold() -> None:
    found = present_tags(np.array([0.4, 0.9, 0.2]), ["a", "b", "c"], {"a": 0.35, "b": 0.95})
    assert [s.label for s in found] == ["a"]  # b is under its 0.95, c under the default 0.5


def test_iou_and_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=np.float32)
    np.testing.assert_allclose(box_iou(boxes[0], boxes[1:]), [81 / 119, 0.0], rtol=1e-6)
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5) == [0, 2]
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.7) == [0, 1, 2]


def test_decode_detections_maps_fractions_to_original_pixels() -> None:
    boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.11, 0.21, 0.5, 0.6], [0.6, 0.6, 0.9, 0.9]], dtype=np.float32)
    scores = np.array([[0.9, 0.0], [0.8, 0.1], [0.05, 0.7]], dtype=np.float32)
    found = decode_detections(boxes, scores, ["egg", "milk"], width=200, height=100, score_threshold=0.3)
    assert [(d.label, round(d.score, 2)) for d in found] == [("egg", 0.9), ("milk", 0.7)]
    egg = found[0]
    assert (round(egg.x1), round(egg.y1), round(egg.x2), round(egg.y2)) == (20, 20, 100, 60)
    assert {k: round(v, 3) for k, v in egg.normalized(200, 100).items()} == {
        "left": 0.1, "top": 0.2, "width": 0.4, "height": 0.4}


def test_top_k_of_many_classes_orders_ties_as_a_full_stable_sort() -> None:
    rng = np.random.default_rng(7)
    labels = [f"class_{i}" for i in range(1000)]
    for _ in range(200):
        probabilities = rng.integers(0, 6, size=1000).astype(np.float32) / 5  # many ties at the k-th place
        k = int(rng.integers(1, 12))
        expected = [labels[i] for i in np.argsort(-probabilities, kind="stable")[:k]]
        assert [score.label for score in top_k(probabilities, labels, k)] == expected
