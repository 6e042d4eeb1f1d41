"""Token-transformer inference (seed 001): tokenize the known patches, sample the hole's tokens, decode, paste.

One job on the runner's working crop (28 x 28 digits or a 64 x 64 face box):

1. the crop is cut into p x p patches and every patch that touches the hole becomes MASK; the other patches are
   tokenized one by one (patch-local, so no known token depends on a hole pixel; the hole is also zeroed before
   encoding, which changes nothing but makes that visible); models that read known pixels also get each patch's
   pixels outside the hole (``fsq.known_patches``);
2. the hole's tokens are sampled: MaskGIT's parallel decoding (``bidirectional``: a preview per pass) or raster
   order through the causal decoder (``autoregressive``: a preview per finished row), engine/token/sampling.py;
3. the tokenizer's decoder draws the tokens, guided by the known pixels; the runner pastes only the hole back.

Previews show the tokens decided so far solid and the ones still open faintly (this pass's draft, mostly grey),
so the hole fills token by token. ``fill`` is the batched core that the benchmarks call directly.

Grain matching (``grain``, on by default): a token carries a patch's shapes and colours, not its sensor noise, so
a decoded fill is smoother than the photo around it (one half of the seed's "flat colour"). The noise level of the
known pixels is estimated per channel (Immerkaer 1996, "Fast noise variance estimation": the Laplacian-difference
kernel N removes smooth structure, and for Gaussian noise |I * N| has median 0.6745 * 6 * sigma; the median keeps
edges from inflating it), and Gaussian noise of that level, drawn from the job's seed, is added inside the hole.
On noiseless images (MNIST) the estimate is 0 and nothing changes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Generator

import numpy as np

from engine.api import CancelToken, Inpainter, InpaintError, JobGen, ModelInfo, ModelOutput, Preview, Request
from engine.weights import CACHE, MODELS_DIR, cache_key

OPEN_TOKEN_SHOW = 0.3  # how much of a still-open token's draft a preview shows (the rest is grey)
_LAPLACE_DIFF = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)  # Immerkaer's N


def noise_sigma(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Per-channel sensor-noise sigma (0-255 units) of ``image`` (H x W x C uint8) over the ``known`` pixels whose
    3x3 neighbourhood is known too; zeros when fewer than 16 such pixels."""
    import cv2

    inner = cv2.erode(known.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                      borderValue=0).astype(bool)
    if inner.sum() < 16:
        return np.zeros(image.shape[2], np.float32)
    out = []
    for c in range(image.shape[2]):
        r = cv2.filter2D(image[..., c].astype(np.float32), -1, _LAPLACE_DIFF, borderType=cv2.BORDER_REFLECT)
        out.append(float(np.median(np.abs(r[inner]))) / (0.6745 * 6.0))
    return np.asarray(out, np.float32)


def match_grain(filled: np.ndarray, image: np.ndarray, hole: np.ndarray, seed: int) -> np.ndarray:
    """``filled`` (H x W x C uint8) with Gaussian noise of the known pixels' level added inside ``hole``."""
    sigma = noise_sigma(image, ~hole)
    if not sigma.any():
        return filled
    noise = np.random.default_rng([int(seed), 0x6EA1]).standard_normal(filled.shape).astype(np.float32) * sigma
    out = filled.astype(np.float32)
    out[hole] += noise[hole]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def load_models(folder: Path, device):
    """(transformer, tokenizer), loaded once each (``engine.weights.CACHE``) and moved to ``device``."""
    from engine.token.fsq import load_tokenizer
    from engine.token.transformer import load_transformer, tokenizer_folder

    net = CACHE.get(cache_key("token", folder), lambda: load_transformer(folder), device)
    tok_dir = tokenizer_folder(net.config, folder, MODELS_DIR)
    if not (Path(folder) / "config.json").is_file() or not tok_dir.is_dir():
        raise InpaintError(f"token model {folder}: its tokenizer {tok_dir} is missing")
    tok = CACHE.get(cache_key("token-fsq", tok_dir), lambda: load_tokenizer(tok_dir), device)
    return net, tok


def start_ids(tok, x, hole):
    """(ids B x N with MASK on every token touching the hole, token hole B x N): the transformer's input."""
    import torch

    from engine.token.fsq import token_hole

    th = token_hole(hole, tok.config.patch).flatten(1)
    ids = tok.encode(x * (1 - hole)).flatten(1)
    return torch.where(th, torch.full_like(ids, tok.config.mask_id), ids), th


def fill(net, tok, x, hole, params: dict, generator, check=None) -> Generator:
    """Batched core. x B x C x S x S in [-1, 1], hole B x 1 x S x S (1 = fill) -> yields TokenSteps, returns
    (decoded images B x C x S x S, final ids B x N, network calls)."""
    import torch

    from engine.token.fsq import known_patches
    from engine.token.sampling import autoregressive_decode, maskgit_decode

    c = net.config
    with torch.inference_mode():
        ids, _ = start_ids(tok, x, hole)
        pixels = known_patches(x, hole, tok.config.patch) if c.pixels else None
        if c.variant == "bidirectional":
            def logits_at(cur, at):
                if check is not None:
                    check()
                return net(cur, at, pixels)
            steps = maskgit_decode(logits_at, ids, c.mask_id, params["iterations"], params["temperature"],
                                   params["top_k"], params["confidence_noise"], generator,
                                   params.get("top_p", 1.0))
        else:
            steps = autoregressive_decode(net, ids, c.mask_id, c.start_id, c.grid, params["temperature"],
                                          params["top_k"], generator, check, pixels,
                                          params.get("top_p", 1.0))
        calls = 0
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                final = stop.value
                break
            calls = step.calls
            yield step
        y = tok.decode(final.view(len(x), c.grid, c.grid), x, hole)
    return y, final, calls


class TokenInpainter(Inpainter):
    def __init__(self, info: ModelInfo, folder: str | Path | None = None) -> None:
        super().__init__(info)
        self.folder = Path(folder or info.weights)
        self.has_grain = any(p.name == "grain" for p in info.params)

    def models(self, device=None):
        from engine.device import compute_device

        return load_models(self.folder, device or compute_device())

    def warm_up(self) -> None:
        self.models()

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        import torch

        from engine.device import compute_device
        from engine.tensors import to_image, to_tensor
        from engine.token.fsq import token_hole

        device = compute_device()
        net, tok = self.models(device)
        tc = tok.config
        image, mask = request.image, request.mask.astype(bool)
        if image.shape[:2] != (tc.size, tc.size):
            raise InpaintError(f"{self.info.name} works on {tc.size}x{tc.size} crops, got {image.shape[1]}x"
                               f"{image.shape[0]}")
        x = to_tensor(image, device, channels=tc.channels)
        hole = torch.from_numpy(mask.astype(np.float32))[None, None].to(device)
        generator = torch.Generator().manual_seed(int(request.seed))
        params = request.params
        job = fill(net, tok, x, hole, params, generator, cancel.check)
        while True:
            try:
                step = next(job)
            except StopIteration as stop:
                y, _, calls = stop.value
                break
            with torch.inference_mode():
                shown = self._preview(tok, step, x, hole)
            label = "pass" if net.config.variant == "bidirectional" else "row"
            yield Preview(step=step.step, total=step.total, image=np.where(mask[..., None], shown, image),
                          message=f"{label} {step.step}/{step.total}: {self._open(step, tc)} tokens still open")
        filled = to_image(y)
        if self.has_grain and params["grain"]:
            filled = match_grain(filled, image, mask, request.seed)
        out = np.where(mask[..., None], filled, image)
        n_hole = int(token_hole(hole, tc.patch).sum())
        return ModelOutput(out, unet_calls=calls, stats={"hole_tokens": n_hole, "network_calls": calls})

    @staticmethod
    def _open(step, tc) -> int:
        return int((step.ids == tc.mask_id).sum())

    @staticmethod
    def _preview(tok, step, x, hole) -> np.ndarray:
        """The draft decoded; tokens still open drawn mostly grey (``OPEN_TOKEN_SHOW`` of the draft)."""
        import torch
        import torch.nn.functional as F

        from engine.tensors import to_image

        c = tok.config
        y = tok.decode(step.draft.view(len(x), c.grid, c.grid), x, hole)
        open_ = (step.ids == c.mask_id).view(len(x), 1, c.grid, c.grid).float()
        open_px = F.interpolate(open_, scale_factor=c.patch, mode="nearest")
        y = y * (1 - open_px * (1 - OPEN_TOKEN_SHOW))
        return to_image(torch.where(hole > 0, y, x))
