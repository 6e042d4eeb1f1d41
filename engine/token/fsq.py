"""The image tokenizer: a patch-local encoder, finite scalar quantization, and a decoder guided by the known pixels.

Maths, with the papers it comes from:

- Finite scalar quantization (FSQ; Mentzer, Minnen, Agustsson & Tschannen 2023, "Finite Scalar Quantization:
  VQ-VAE Made Simple", sec. 3 and appendix A.1). The encoder gives d numbers per token; each is bounded and
  rounded to one of L_i levels:
      f(z_i) = floor(L_i / 2) * tanh(z_i)            (the bound; the paper's code shifts even L_i by half a level)
      zhat_i = round(f(z_i)),  gradients through round() by the straight-through estimator
               (round_ste(x) = x + sg(round(x) - x)),
  and zhat_i / floor(L_i / 2) in [-1, 1] goes to the decoder. The implicit codebook is the product of the level
  sets, prod(L_i) codes, all of them used by construction: nothing can collapse (there is no codebook to learn,
  no commitment loss). A token's id is its levels read as a mixed-radix number.
- Patch-local encoding (PUT; Liu, Wan, Huang, Zhang, Liao & Lin, CVPR 2022, "Reduce Information Loss in
  Transformers for Pluralistic Image Inpainting", sec. 3.1): the encoder sees one non-overlapping p x p patch at
  a time (an MLP on the patch's pixels), so the token of a patch without hole pixels is exactly the token of the
  intact image there; no known token ever encodes the hole. The seed (001) tokenized an image whose hole was
  zeroed with DALL-E's overlapping encoder, so tokens at the hole's edge described the hole.
- Guided decoder (PUT's "multi-scale guided decoder", sec. 3.3, in small): the decoder reads the token grid
  (3x3 convolutions on the grid, so a token is drawn in the context of its neighbours, as DALL-E's decoder does)
  *and* the known pixels with the hole mask, so the fill meets its surroundings without a seam and the known
  pixels of a token the hole only touches are not lost. Trained on random holes (half of them the whole image,
  so it also decodes tokens alone) with the loss on the hole's pixels, a tenth on the rest; the face decoder then
  alone, against seams and blur (engine/token/train_tokenizer.py, ``forward``'s conditioning augmentation).

The config is stored with the weights (``engine.weights.save_pretrained``); ``MASK`` and ``START`` are the two
ids after the codebook, ids of their own that no image ever produces.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class TokenizerConfig:
    channels: int = 1  # 1 = grey (MNIST), 3 = RGB
    size: int = 28  # working resolution (square); must be a multiple of patch
    patch: int = 4  # pixels per token side
    levels: tuple[int, ...] = (8, 5, 5, 5)  # FSQ levels per latent dimension (the paper's 1,000-code setting)
    enc_hidden: int = 256  # width of the per-patch MLP
    dec_grid: int = 128  # channels of the decoder on the token grid
    dec_pixel: int = 32  # channels of the decoder at pixel resolution
    grid_blocks: int = 2  # residual blocks on the token grid
    pixel_blocks: int = 2  # residual blocks at pixel resolution

    @property
    def grid(self) -> int:
        return self.size // self.patch

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def known_pixel_size(self) -> int:
        """Features per token of ``known_patches``: the patch's pixels and where they are known."""
        return (self.channels + 1) * self.patch * self.patch

    @property
    def mask_id(self) -> int:
        return self.codebook_size

    @property
    def start_id(self) -> int:
        return self.codebook_size + 1


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() with the straight-through gradient (FSQ, eq. 1's sg trick)."""
    return x + (torch.round(x) - x).detach()


class FSQ(nn.Module):
    """Finite scalar quantization over the last dimension (Mentzer et al. 2023, appendix A.1)."""

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        lv = torch.tensor(levels, dtype=torch.int64)
        self.register_buffer("levels", lv, persistent=False)  # L_i
        basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.int64), lv[:-1]]), 0)
        self.register_buffer("basis", basis, persistent=False)  # mixed-radix place values
        self.register_buffer("half_width", lv // 2, persistent=False)  # floor(L_i / 2)

    def bound(self, z: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """f(z) = half_l * tanh(z + shift) - offset, in (-floor(L/2) - 0.5, ...): round() then gives L levels
        (even L: the levels -L/2 .. L/2 - 1, hence the half-level offset)."""
        lv = self.levels.to(z.dtype)
        half_l = (lv - 1) * (1 - eps) / 2
        offset = torch.where(self.levels % 2 == 1, 0.0, 0.5).to(z.dtype)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., d) -> zhat / floor(L / 2), in [-1, 1] (..., d), straight-through."""
        return round_ste(self.bound(z)) / self.half_width.to(z.dtype)

    def codes_to_ids(self, zhat: torch.Tensor) -> torch.Tensor:
        q = torch.round(zhat * self.half_width).long() + self.half_width  # 0 .. L_i - 1
        return (q * self.basis).sum(-1)

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        q = (ids.long()[..., None] // self.basis) % self.levels
        return (q - self.half_width).float() / self.half_width.float()


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, 1, 1),
                                  nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Tokenizer(nn.Module):
    """Images (B x C x S x S in [-1, 1]) <-> token ids (B x g x g, g = S / patch)."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = c = config
        if c.size % c.patch:
            raise ValueError(f"size {c.size} is not a multiple of patch {c.patch}")
        d, pix = len(c.levels), c.channels * c.patch * c.patch
        self.encoder = nn.Sequential(  # one patch at a time: PUT's patch-local encoding
            nn.Linear(pix, c.enc_hidden), nn.GELU(), nn.Linear(c.enc_hidden, c.enc_hidden), nn.GELU(),
            nn.Linear(c.enc_hidden, d))
        self.fsq = FSQ(c.levels)
        self.dec_in = nn.Conv2d(d, c.dec_grid, 1)
        self.dec_grid = nn.Sequential(*(ResBlock(c.dec_grid) for _ in range(c.grid_blocks)))
        self.to_pixels = nn.Conv2d(c.dec_grid, c.dec_pixel * c.patch * c.patch, 1)  # then pixel shuffle
        self.guide = nn.Conv2d(c.channels + 1, c.dec_pixel, 3, 1, 1)  # known pixels and the hole mask
        self.dec_pixel = nn.Sequential(*(ResBlock(c.dec_pixel) for _ in range(c.pixel_blocks)),
                                       nn.GroupNorm(8, c.dec_pixel), nn.SiLU(),
                                       nn.Conv2d(c.dec_pixel, c.channels, 3, 1, 1))

    # -- encoding ------------------------------------------------------------------------------------------
    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """B x C x S x S -> B x g x g x (C * p * p): each token's own pixels and nothing else."""
        return patchify(x, self.config.patch)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """B x C x S x S -> quantized codes B x g x g x d in [-1, 1]."""
        return self.fsq(self.encoder(self.patches(x)))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """B x C x S x S in [-1, 1] -> ids B x g x g (int64)."""
        return self.fsq.codes_to_ids(self.quantize(x))

    # -- decoding ------------------------------------------------------------------------------------------
    def decode_codes(self, codes: torch.Tensor, known: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """codes B x g x g x d, known pixels B x C x S x S (anything in the hole: it is zeroed here), hole
        B x 1 x S x S (1 = unknown) -> B x C x S x S in [-1, 1]."""
        c = self.config
        h = self.dec_grid(self.dec_in(codes.permute(0, 3, 1, 2)))
        h = F.pixel_shuffle(self.to_pixels(h), c.patch)
        h = h + self.guide(torch.cat([known * (1 - hole), hole], 1))
        return torch.tanh(self.dec_pixel(h))

    def decode(self, ids: torch.Tensor, known: torch.Tensor | None = None, hole: torch.Tensor | None = None
               ) -> torch.Tensor:
        """ids B x g x g (codebook ids only) -> images; without ``known`` the tokens alone are drawn."""
        c = self.config
        b = ids.shape[0]
        if hole is None or known is None:
            known = torch.zeros(b, c.channels, c.size, c.size, device=ids.device)
            hole = torch.ones(b, 1, c.size, c.size, device=ids.device)
        return self.decode_codes(self.fsq.ids_to_codes(ids).to(known.dtype), known, hole)

    def forward(self, x: torch.Tensor, hole: torch.Tensor, replace: torch.Tensor | None = None, shift: int = 0
                ) -> torch.Tensor:
        """Training pass: quantize (straight-through), decode with the known pixels of ``x`` outside ``hole``.

        ``replace`` (B x g x g bool, optional): those tokens are replaced before decoding by the token of the same
        patch taken up to ``shift`` pixels off, the target staying the true image. A transformer's sampled tokens
        are each plausible but do not quite line up with their neighbours, and a decoder that only ever saw an
        encoder's codes draws every disagreement as a step at the token's border (the seed's line artefacts).
        Corrupting the conditioning in training so that the next stage is robust to the previous stage's errors
        is the cascaded diffusion models' conditioning augmentation (Ho, Saharia, Chan, Fleet, Norouzi &
        Salimans, JMLR 2022, sec. 4.1)."""
        codes = self.quantize(x)
        if replace is not None and shift > 0 and replace.any():
            with torch.no_grad():
                alt = torch.where(replace[..., None], self.shifted_codes(x, shift), codes)
            codes = codes + (alt - codes).detach()
        return self.decode_codes(codes, x, hole)

    def shifted_codes(self, x: torch.Tensor, shift: int, k: int = 4) -> torch.Tensor:
        """Codes (B x g x g x d) of the image moved by one of ``k`` random offsets in [-shift, shift]^2 (edges
        repeated), the offset drawn per token."""
        p = F.pad(x, (shift,) * 4, mode="replicate")
        s = self.config.size
        offsets = torch.randint(0, 2 * shift + 1, (k, 2)).tolist()
        options = torch.stack([self.quantize(p[..., dy:dy + s, dx:dx + s]) for dy, dx in offsets])
        pick = torch.randint(0, k, options.shape[1:4], device=x.device)
        return options.gather(0, pick[None, ..., None].expand(1, *options.shape[1:])).squeeze(0)


def token_hole(hole: torch.Tensor, patch: int) -> torch.Tensor:
    """Pixel hole B x 1 x S x S (or B x S x S) -> token hole B x g x g bool: every token touching the hole."""
    if hole.dim() == 3:
        hole = hole[:, None]
    return F.max_pool2d(hole.float(), patch).squeeze(1) > 0


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """B x C x S x S -> B x g x g x (C * p * p), g = S / p: the non-overlapping patches, channel-major."""
    b, ch, s, _ = x.shape
    g = s // patch
    return x.reshape(b, ch, g, patch, g, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, g, g, ch * patch * patch)


def known_patches(x: torch.Tensor, hole: torch.Tensor, patch: int) -> torch.Tensor:
    """B x C x S x S image and B x 1 x S x S hole (1 = unknown) -> B x N x (C + 1) p p: each patch's known pixels
    (hole pixels zeroed) and where they are. The transformers' second input: a MASK token at the hole's edge still
    sees the part of its patch outside the hole, and no feature depends on a hole pixel."""
    known = 1 - hole.to(x.dtype)
    return patchify(torch.cat([x * known, known], 1), patch).flatten(1, 2)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def save_tokenizer(folder: str | Path, net: Tokenizer, training: dict | None = None) -> Path:
    from engine.weights import save_pretrained

    return save_pretrained(folder, net, net.config, training)


def load_tokenizer(folder: str | Path, device="cpu") -> Tokenizer:
    from engine.weights import load_pretrained

    net, _ = load_pretrained(folder, Tokenizer, TokenizerConfig, device)
    return net.requires_grad_(False)
