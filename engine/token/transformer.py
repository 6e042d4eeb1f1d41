"""The two token transformers of seed 001 ("PAIN"), over the ids of engine/token/fsq.py.

Both embed ids (the codebook plus MASK and START, ids of their own) to ``width`` and add a fixed 2-D sinusoidal
positional encoding (half of the channels encode the row, half the column: the seed's multidim encoding; Vaswani
et al. 2017, sec. 3.5, per axis). Blocks are pre-norm (Xiong et al. 2020) with attention written out as
softmax(q k^T / sqrt(d_head)) v (on this CPU it runs in bfloat16 several times faster than the fused kernel).

- ``BidirectionalTransformer`` (variant 1; MaskGIT's bidirectional transformer, Chang et al. 2022, sec. 3.1):
  the whole grid in, hole tokens as MASK, logits over the codebook at every position out. Trained on masked
  positions only (``loss_masked``); decoded by ``engine.token.sampling.maskgit_decode``.
- ``AutoregressiveTransformer`` (variant 2, the seed's encoder-decoder): an encoder reads the grid with the hole
  as MASK ids (the known tokens, and where the hole is); a causal decoder then writes the hole's tokens in raster
  order, starting from START. Decoder input i is the embedding of the token written before it (START for the
  first) plus the 2-D position of the token it is about to predict: after the seed's reshuffle the decoder no
  longer knew where it was writing, and this tells it. Cross-attention reads the encoder's output.

Known pixels (``pixels`` > 0 in the config): every position also gets a linear embedding of its patch's known
pixels and where they are (``fsq.known_patches``, hole pixels zeroed). A token is MASK when any pixel of its patch
is in the hole, so on ids alone a 14 x 14 hole at pixel 7 of a digit hides pixels 4-23 from the transformer: the
rows just outside the hole, which say where strokes leave it. PUT (Liu et al. CVPR 2022) feeds its transformer the
unquantized patch features for the same reason.

The head predicts only codebook ids (``vocab`` outputs), so MASK and START can never be sampled.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

VARIANTS = ("bidirectional", "autoregressive")


@dataclass
class TransformerConfig:
    variant: str = "bidirectional"
    vocab: int = 1000  # codebook size; MASK = vocab, START = vocab + 1
    grid: int = 7  # tokens per side
    width: int = 256
    layers: int = 6  # bidirectional: encoder blocks; autoregressive: encoder blocks + decoder blocks
    decoder_layers: int = 3  # autoregressive only: how many of ``layers`` are decoder blocks
    heads: int = 8
    mlp: int = 4  # MLP hidden = mlp * width
    dropout: float = 0.0
    tokenizer: str = "token-fsq-mnist"  # folder of the tokenizer (relative: under resources/models)
    pixels: int = 0  # known-pixel input per position, (C + 1) * p * p; 0 = ids only (the first face models)

    @property
    def mask_id(self) -> int:
        return self.vocab

    @property
    def start_id(self) -> int:
        return self.vocab + 1


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid * grid) x dim: [sin, cos](row / 10000^(2i/(dim/2))) then the same for the column."""
    half, quarter = dim // 2, dim // 4
    freq = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    pos = torch.arange(grid, dtype=torch.float64)[:, None] * freq[None]
    axis = torch.cat([pos.sin(), pos.cos()], 1)  # grid x half
    rows = axis[:, None, :].expand(grid, grid, half)
    cols = axis[None, :, :].expand(grid, grid, half)
    return torch.cat([rows, cols], 2).reshape(grid * grid, dim).float()


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n, w = x.shape
        h = self.heads
        q = self.q(x).view(b, n, h, w // h).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, h, w // h).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) * (w // h) ** -0.5
        if bias is not None:
            att = att + bias
        att = self.drop(att.softmax(-1))
        return self.proj((att @ v).transpose(1, 2).reshape(b, n, w))


class Block(nn.Module):
    """Pre-norm block: self-attention, [cross-attention], MLP; each with a residual."""

    def __init__(self, c: TransformerConfig, cross: bool = False) -> None:
        super().__init__()
        self.n1 = nn.LayerNorm(c.width)
        self.attn = Attention(c.width, c.heads, c.dropout)
        self.cross = Attention(c.width, c.heads, c.dropout) if cross else None
        self.nc = nn.LayerNorm(c.width) if cross else None
        self.n2 = nn.LayerNorm(c.width)
        self.mlp = nn.Sequential(nn.Linear(c.width, c.mlp * c.width), nn.GELU(), nn.Linear(c.mlp * c.width, c.width),
                                 nn.Dropout(c.dropout))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None, memory: torch.Tensor | None = None
                ) -> torch.Tensor:
        y = self.n1(x)
        x = x + self.attn(y, y, bias)
        if self.cross is not None:
            x = x + self.cross(self.nc(x), memory)
        return x + self.mlp(self.n2(x))


class _Base(nn.Module):
    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.config = c
        self.embed = nn.Embedding(c.vocab + 2, c.width)
        self.register_buffer("pos", sincos_2d(c.grid, c.width), persistent=False)
        self.norm = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, c.vocab)
        self.pixel_in = nn.Linear(c.pixels, c.width) if c.pixels else None
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def inputs(self, ids: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
        """ids B x N, pixels B x N x ``pixels`` (``fsq.known_patches``) -> B x N x width."""
        h = self.embed(ids) + self.pos
        if self.pixel_in is not None:
            if pixels is None:
                raise ValueError("this transformer reads the known pixels: pass pixels= (fsq.known_patches)")
            h = h + self.pixel_in(pixels.to(h.dtype))
        return h

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(h)).float()


class BidirectionalTransformer(_Base):
    """ids B x N (N = grid^2, MASK in the hole) [+ known pixels] -> logits B x N x vocab (or at ``at``: K x vocab)."""

    def __init__(self, c: TransformerConfig) -> None:
        super().__init__(c)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))

    def forward(self, ids: torch.Tensor, at: torch.Tensor | None = None, pixels: torch.Tensor | None = None
                ) -> torch.Tensor:
        h = self.inputs(ids, pixels)
        for blk in self.blocks:
            h = blk(h)
        return self.logits(h[at] if at is not None else h)


class AutoregressiveTransformer(_Base):
    """Encoder over the grid (hole = MASK), causal decoder over the hole's tokens in raster order."""

    def __init__(self, c: TransformerConfig) -> None:
        super().__init__(c)
        enc = c.layers - c.decoder_layers
        if enc < 1 or c.decoder_layers < 1:
            raise ValueError("autoregressive: need at least one encoder and one decoder block")
        self.encoder = nn.ModuleList(Block(c) for _ in range(enc))
        self.enc_norm = nn.LayerNorm(c.width)
        self.decoder = nn.ModuleList(Block(c, cross=True) for _ in range(c.decoder_layers))

    def encode(self, ids: torch.Tensor, pixels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inputs(ids, pixels)
        for blk in self.encoder:
            h = blk(h)
        return self.enc_norm(h)

    def decode(self, memory: torch.Tensor, prev: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """memory B x N x W; prev B x M: the id written before each step (START first); where B x M: the grid
        position each step predicts (any valid index for padding) -> logits B x M x vocab."""
        m = prev.shape[1]
        h = self.embed(prev) + self.pos[where]
        causal = torch.full((m, m), float("-inf"), device=prev.device).triu(1)
        for blk in self.decoder:
            h = blk(h, causal, memory)
        return self.logits(h)

    def forward(self, ids: torch.Tensor, prev: torch.Tensor, where: torch.Tensor,
                pixels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(ids, pixels), prev, where)


def build(c: TransformerConfig) -> nn.Module:
    if c.variant not in VARIANTS:
        raise ValueError(f"variant {c.variant!r}: expected one of {', '.join(VARIANTS)}")
    return BidirectionalTransformer(c) if c.variant == "bidirectional" else AutoregressiveTransformer(c)


def raster_order(hole: torch.Tensor, fill: int = 0, bucket: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """hole B x N bool -> (where B x M: the hole's positions in raster order, padded with ``fill``; valid B x M).
    ``bucket`` rounds M up to a multiple (training: a few shapes, not one per step, keep the CPU's kernel caches
    small)."""
    n = hole.shape[1]
    counts = hole.sum(1)
    m = max(1, int(counts.max()))
    m = min(n, -(-m // bucket) * bucket)
    # stable sort: hole positions first, each group in raster order
    key = (~hole).long() * n + torch.arange(n, device=hole.device)
    where = key.argsort(1)[:, :m]
    valid = torch.arange(m, device=hole.device)[None] < counts[:, None]
    return torch.where(valid, where, torch.full_like(where, fill)), valid


def teacher_forcing(targets: torch.Tensor, where: torch.Tensor, valid: torch.Tensor, start_id: int) -> torch.Tensor:
    """prev B x M for training: START, then the true id of each earlier hole token (the decoder's input)."""
    seq = targets.gather(1, where)
    prev = torch.cat([torch.full_like(seq[:, :1], start_id), seq[:, :-1]], 1)
    return torch.where(valid, prev, torch.full_like(prev, start_id))


def loss_masked(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy with label smoothing (Szegedy et al. 2016) over the scored positions only: ``logits`` K x V
    and ``targets`` K are already restricted to them (masked tokens / valid decoder steps)."""
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def tokenizer_folder(c: TransformerConfig, folder: Path, models_dir: Path) -> Path:
    """Where the tokenizer named by ``c`` lives: an absolute path as is; a name beside the transformer's own
    ``folder`` (a copied pair of models), else under ``models_dir`` (the shipped ones)."""
    p = Path(c.tokenizer)
    if p.is_absolute():
        return p
    beside = Path(folder).parent / p
    return beside if beside.is_dir() else models_dir / p


def load_transformer(folder: str | Path, device="cpu") -> nn.Module:
    from engine.weights import load_pretrained

    net, _ = load_pretrained(folder, build, TransformerConfig, device)
    return net.requires_grad_(False)

