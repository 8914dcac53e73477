"""Multiclass classification on a frozen backbone: pooled features and a linear head."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from visiondock.preprocess import PreprocessSpec, to_tensor

from .backbone import PooledFeatures


def extract_features(extractor: PooledFeatures, images: Sequence[Image.Image], spec: PreprocessSpec, *,
                     batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """Pooled backbone features of each image, shape (N, feature_dim)."""
    chunks = []
    with torch.inference_mode(), tqdm(total=len(images), desc="compute features", unit="img",
                                      disable=not progress) as bar:
        for start in range(0, len(images), batch_size):
            batch = np.stack([to_tensor(img, spec) for img in images[start:start + batch_size]])
            chunks.append(extractor(torch.from_numpy(batch)).numpy())
            bar.update(len(batch))
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def train_linear_head(features: np.ndarray, targets: np.ndarray, num_classes: int, *,
                      weight_decay: float = 1e-3, max_iter: int = 300, seed: int = 0) -> nn.Linear:
    """Multinomial logistic regression fitted with full-batch L-BFGS.

    On a few thousand cached feature vectors this converges in well under a second,
    deterministically for a given seed.
    """
    torch.manual_seed(seed)
    x = torch.from_numpy(features.astype(np.float32))
    y = torch.from_numpy(targets.astype(np.int64))
    head = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                                  line_search_fn="strong_wolfe")
    loss_fn = nn.CrossEntropyLoss()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(head(x), y) + weight_decay * head.weight.pow(2).sum() / 2
        loss.backward()
        return loss

    optimizer.step(closure)
    return head.eval()


class ImageClassifier(nn.Module):
    """Backbone, pooling, head and softmax: the graph that is exported to ONNX."""

    def __init__(self, features: PooledFeatures, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.features(image)), dim=1)
