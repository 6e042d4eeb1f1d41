"""Shared parts of the token-family benchmarks (token_mnist.py, token_faces.py): batched fills, the tokenizer's
reconstruction ceiling, the seed's failure modes as numbers, and a Frechet distance on a frozen network's features.

The failure modes of seed 001, measured on every method the same way (judges fixed before any training):

- line artefacts: inside the hole, the mean absolute step between neighbouring pixels across the token grid's lines
  (x or y a multiple of the patch) over the same mean elsewhere; pooled over all fills. The tokenizer's own plain
  reconstructions (true tokens, same hole, same decoder) give the reference ratio; ``line_rel`` = fill / reference.
  Threshold: line_rel <= 1.15.
- flat colour: detail = mean gradient magnitude in the hole over that in a ring of known pixels around it
  (4 px wide), saturation = mean HSV saturation in the hole over the ring's (colour images only); each pooled over
  the fills and divided by the same ratio on the true images (``detail_rel``, ``saturation_rel``).
  Thresholds: both >= 0.75.
- empty fills: the composite is tokenized again (the patch-local encoder, so any method can be judged) and a fill
  is empty when one id covers more than 80 % of the tokens touching the hole (holes of >= 5 tokens only). The
  same is counted on the true images. Threshold: at most 2 % of fills on faces; on MNIST, whose holes are often
  mostly black background, at most the true images' rate + 2 points.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import torch


def model_defaults(name: str) -> dict:
    """The decoding parameters a registered token model fills with when the user changes nothing."""
    from engine import registry

    return {p.name: p.default for p in registry.get_info(name).params if p.name != "grain"}


THRESHOLDS = {"line_rel_max": 1.15, "detail_rel_min": 0.75, "saturation_rel_min": 0.75, "empty_max": 0.02,
              "empty_over_truth_max": 0.02}


def token_fill(folder, images: np.ndarray, masks: np.ndarray, params: dict, seed: int = 0, batch: int = 100
               ) -> tuple[np.ndarray, dict]:
    """Composites (N x S x S x C uint8) from a token model folder, in batches on the CPU, and the timing."""
    from engine.api import drive
    from engine.token.data import to_unit
    from engine.token.pipeline import fill, load_models, match_grain

    net, tok = load_models(folder, torch.device("cpu"))
    out, calls, t0 = [], 0, time.perf_counter()
    for i in range(0, len(images), batch):
        x = to_unit(images[i:i + batch])
        hole = torch.from_numpy(masks[i:i + batch].astype(np.float32))[:, None]
        y, _, c = drive(fill(net, tok, x, hole, params, torch.Generator().manual_seed(seed + i)))
        calls = max(calls, c)
        out.append(to_uint8(torch.where(hole > 0, y, x)))
    out = np.concatenate(out)
    if params.get("grain"):
        out = np.stack([match_grain(o, im, m, seed + i) for i, (o, im, m) in enumerate(zip(out, images, masks))])
    wall = time.perf_counter() - t0
    return out, {"wall_s_per_image": wall / len(images), "wall_s": wall, "batch": batch,
                                 "network_calls_per_batch": calls}


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def reconstruction(tok, images: np.ndarray, masks: np.ndarray, batch: int = 500) -> np.ndarray:
    """The ceiling of every token fill: the true image's own tokens decoded with the same known pixels."""
    from engine.token.data import to_unit

    out = []
    for i in range(0, len(images), batch):
        x = to_unit(images[i:i + batch])
        hole = torch.from_numpy(masks[i:i + batch].astype(np.float32))[:, None]
        out.append(to_uint8(torch.where(hole > 0, tok.decode(tok.encode(x), x, hole), x)))
    return np.concatenate(out)


def _grey(images: np.ndarray) -> np.ndarray:
    if images.shape[-1] == 1:
        return images[..., 0].astype(np.float32)
    return np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in images]).astype(np.float32)


def line_ratio(images: np.ndarray, masks: np.ndarray, patch: int) -> float:
    """Pooled mean |step| across token-grid lines over the mean |step| elsewhere, both inside the hole."""
    g = _grey(images)
    across, other = [0.0, 0], [0.0, 0]
    for axis in (1, 2):
        d = np.abs(np.diff(g, axis=axis))
        both = masks[:, :, 1:] & masks[:, :, :-1] if axis == 2 else masks[:, 1:] & masks[:, :-1]
        pos = np.arange(1, g.shape[axis]) % patch == 0  # the step from pixel k-1 to k crosses a line when k % p == 0
        line = both & (pos[None, None, :] if axis == 2 else pos[None, :, None])
        rest = both & ~line
        across[0] += d[line].sum()
        across[1] += line.sum()
        other[0] += d[rest].sum()
        other[1] += rest.sum()
    return float((across[0] / max(1, across[1])) / max(1e-6, other[0] / max(1, other[1])))


def _ring(mask: np.ndarray, width: int = 4) -> np.ndarray:
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * width + 1, 2 * width + 1), np.uint8)) > 0
    return grown & ~mask


def detail_saturation(images: np.ndarray, masks: np.ndarray) -> tuple[float, float | None]:
    """(pooled hole/ring gradient-magnitude ratio, pooled hole/ring saturation ratio or None for grey)."""
    g = _grey(images)
    colour = images.shape[-1] == 3
    dh = dr = sh = sr = 0.0
    for i in range(len(images)):
        gx = cv2.Sobel(g[i], cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(g[i], cv2.CV_32F, 0, 1, ksize=3)
        mag = np.sqrt(gx ** 2 + gy ** 2)
        ring = _ring(masks[i])
        if not ring.any():
            continue
        dh += mag[masks[i]].mean()
        dr += mag[ring].mean()
        if colour:
            s = cv2.cvtColor(images[i], cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32)
            sh += s[masks[i]].mean()
            sr += s[ring].mean()
    return float(dh / max(dr, 1e-6)), (float(sh / max(sr, 1e-6)) if colour else None)


@torch.no_grad()
def empty_fill_rate(tok, images: np.ndarray, masks: np.ndarray, share: float = 0.8, min_tokens: int = 5
                    ) -> tuple[float, int]:
    """(share of fills where one id covers > ``share`` of the hole's tokens, number of fills judged)."""
    from engine.token.data import to_unit
    from engine.token.fsq import token_hole

    empty, judged = 0, 0
    for i in range(0, len(images), 500):
        ids = tok.encode(to_unit(images[i:i + 500])).flatten(1)
        th = token_hole(torch.from_numpy(masks[i:i + 500]).float(), tok.config.patch).flatten(1)
        for row, h in zip(ids, th):
            n = int(h.sum())
            if n < min_tokens:
                continue
            judged += 1
            empty += int(torch.bincount(row[h]).max()) > share * n
    return empty / max(1, judged), judged


def failure_modes(tok, fills: np.ndarray, truth: np.ndarray, masks: np.ndarray, reference: np.ndarray) -> dict:
    """The three failure-mode numbers of one method (see the module docstring); ``reference`` = reconstructions."""
    line_f = line_ratio(fills, masks, tok.config.patch)
    line_r = line_ratio(reference, masks, tok.config.patch)
    d_f, s_f = detail_saturation(fills, masks)
    d_t, s_t = detail_saturation(truth, masks)
    empty, judged = empty_fill_rate(tok, fills, masks)
    empty_truth, _ = empty_fill_rate(tok, truth, masks)
    out = {"line_ratio": round(line_f, 4), "line_ratio_reconstruction": round(line_r, 4),
           "line_rel": round(line_f / max(line_r, 1e-6), 4), "detail_rel": round(d_f / max(d_t, 1e-6), 4),
           "empty_fills": round(empty, 4), "empty_truth": round(empty_truth, 4), "empty_judged": judged}
    if s_f is not None:
        out["saturation_rel"] = round(s_f / max(s_t, 1e-6), 4)
    return out


def passes(fm: dict, faces: bool) -> dict:
    """Which failure-mode thresholds ``fm`` meets."""
    t = THRESHOLDS
    out = {"line": fm["line_rel"] <= t["line_rel_max"], "detail": fm["detail_rel"] >= t["detail_rel_min"]}
    if "saturation_rel" in fm:
        out["saturation"] = fm["saturation_rel"] >= t["saturation_rel_min"]
    out["empty"] = (fm["empty_fills"] <= t["empty_max"] if faces
                    else fm["empty_fills"] <= fm["empty_truth"] + t["empty_over_truth_max"])
    return {k: bool(v) for k, v in out.items()}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Heusel et al. 2017, FID's formula)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(sa @ sb, disp=False)
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa + sb - 2 * covmean))


def fmt(v, nd: int = 3) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)
