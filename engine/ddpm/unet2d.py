"""The DDPM denoising UNet, written here, reading diffusers' ``UNet2DModel`` folders unchanged.

The network is Ho et al. 2020's (App. B): a PixelCNN++-style UNet of residual blocks with GroupNorm, the
sinusoidal timestep embedding of the Transformer (Vaswani et al. 2017) through a 2-layer MLP added to every block,
and single-head self-attention at the low resolutions. diffusers' ``UNet2DModel`` is the format DDPM checkpoints
come in (google/ddpm-*, and the project's own ``resources/models/ddpm-mnist``); this module builds the same
network from the same ``config.json`` with the same parameter names, so a folder loads with a plain strict
``load_state_dict`` and ``save_pretrained`` writes a folder diffusers reads back.

Why not diffusers' class: importing it costs 3-5 s on a 2-core CPU and pulls in transformers and torch._dynamo
for a network of a few plain layers (issue 25); and this forward is shorter (no deprecation shims or attention
processors), which is what costs at batch 1.

Covered: ``DownBlock2D`` / ``AttnDownBlock2D``, ``UpBlock2D`` / ``AttnUpBlock2D``, ``UNetMidBlock2D`` (or none),
positional time embedding, "default" or "scale_shift" time conditioning, conv up/downsampling, SiLU: the blocks
unconditional DDPMs in diffusers' format are commonly built from (diffusers' own training tutorial uses them).
``unsupported`` names what a config uses beyond them (the loader then hands the folder to diffusers). Checkpoints
saved before diffusers 0.14 name the attention weights query / key / value / proj_attn: ``load_state`` renames them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

DOWN = ("DownBlock2D", "AttnDownBlock2D")
UP = ("UpBlock2D", "AttnUpBlock2D")


@dataclass
class UNet2DConfig:
    """diffusers' UNet2DModel config fields (same names, same defaults)."""

    sample_size: Optional[int] = None
    in_channels: int = 3
    out_channels: int = 3
    center_input_sample: bool = False
    time_embedding_type: str = "positional"
    time_embedding_dim: Optional[int] = None
    freq_shift: int = 0
    flip_sin_to_cos: bool = True
    down_block_types: tuple = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
    mid_block_type: Optional[str] = "UNetMidBlock2D"
    up_block_types: tuple = ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    block_out_channels: tuple = (224, 448, 672, 896)
    layers_per_block: int = 2
    mid_block_scale_factor: float = 1.0
    downsample_padding: int = 1
    downsample_type: str = "conv"
    upsample_type: str = "conv"
    dropout: float = 0.0
    act_fn: str = "silu"
    attention_head_dim: Optional[int] = 8
    norm_num_groups: Optional[int] = 32
    attn_norm_num_groups: Optional[int] = None
    norm_eps: float = 1e-5
    resnet_time_scale_shift: str = "default"
    add_attention: bool = True
    class_embed_type: Optional[str] = None
    num_class_embeds: Optional[int] = None
    num_train_timesteps: Optional[int] = None

    @classmethod
    def from_dict(cls, data: dict) -> "UNet2DConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        return cls(**values)

    def to_dict(self) -> dict:
        return {"_class_name": "UNet2DModel", **json_ready(dataclasses.asdict(self))}


def json_ready(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def unsupported(data: dict) -> Optional[str]:
    """Why ``UNet2D`` cannot build the network of this UNet2DModel config, or None when it can."""
    known = {f.name for f in dataclasses.fields(UNet2DConfig)}
    extra = sorted(k for k in data if not k.startswith("_") and k not in known)
    if extra:
        return f"config fields {', '.join(extra)}"
    c = UNet2DConfig.from_dict(data)
    checks = [
        (all(b in DOWN for b in c.down_block_types), f"down blocks {list(c.down_block_types)}"),
        (all(b in UP for b in c.up_block_types), f"up blocks {list(c.up_block_types)}"),
        (c.mid_block_type in (None, "UNetMidBlock2D"), f"mid block {c.mid_block_type}"),
        (c.time_embedding_type == "positional", f"time embedding {c.time_embedding_type}"),
        (c.resnet_time_scale_shift in ("default", "scale_shift"), f"time scale shift {c.resnet_time_scale_shift}"),
        (c.downsample_type == "conv" and c.upsample_type == "conv", "resnet up/downsampling"),
        (c.act_fn in ("silu", "swish"), f"activation {c.act_fn}"),
        (c.class_embed_type is None and c.num_class_embeds is None, "class conditioning"),
        (c.norm_num_groups is not None, "norm_num_groups = null"),
    ]
    return next((why for ok, why in checks if not ok), None)


def timestep_embedding(t: torch.Tensor, dim: int, flip_sin_to_cos: bool, shift: float) -> torch.Tensor:
    """The Transformer's sinusoidal embedding of t (Ho et al. 2020, App. B), in diffusers' two orderings."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - shift))
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)] if flip_sin_to_cos else [torch.sin(args), torch.cos(args)], 1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimeMLP(nn.Module):
    def __init__(self, cin: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, + projected time embedding (added, or scale and shift after norm2), GroupNorm ->
    SiLU -> dropout -> conv, plus the input (1x1 conv when the width changes), divided by ``scale``."""

    def __init__(self, cin: int, cout: int, tdim: int, groups: int, eps: float, dropout: float, shift: bool,
                 scale: float = 1.0) -> None:
        super().__init__()
        self.shift, self.scale = shift, scale
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(tdim, 2 * cout if shift else cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        t = self.time_emb_proj(F.silu(temb))[:, :, None, None]
        if self.shift:
            scale, shift = t.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + t)
        h = self.conv2(self.dropout(F.silu(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return (skip + h) / self.scale if self.scale != 1 else skip + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels after a GroupNorm, with a residual connection (Ho et al. 2020,
    App. B; diffusers' ``Attention`` as its UNet2D blocks configure it)."""

    def __init__(self, channels: int, head_dim: int, groups: Optional[int], eps: float, scale: float = 1.0) -> None:
        super().__init__()
        self.heads, self.scale = max(1, channels // head_dim), scale
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps) if groups else None
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        seq = (x if self.group_norm is None else self.group_norm(x)).flatten(2).transpose(1, 2)  # N x HW x C

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n, h * w, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.to_q(seq)), heads(self.to_k(seq)), heads(self.to_v(seq)))
        out = self.to_out[0](out.transpose(1, 2).reshape(n, h * w, c))
        out = out.transpose(1, 2).reshape(n, c, h, w) + x
        return out / self.scale if self.scale != 1 else out


class Resample(nn.Module):
    """A 3x3 conv at stride 2 (down) or after nearest 2x upsampling (up); ``conv`` as diffusers names it."""

    def __init__(self, channels: int, down: bool, padding: int = 1) -> None:
        super().__init__()
        self.down, self.padding = down, padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2 if down else 1, padding=padding if down else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.down:
            return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.padding == 0 else x)


class Block(nn.Module):
    """A down or up block: ``resnets`` each followed by its attention when the block has attention, then an
    optional resampler (``downsamplers`` / ``upsamplers``). Up blocks concatenate one skip per resnet."""

    def __init__(self, resnets: list[ResBlock], attentions: Optional[list[SelfAttention]],
                 resampler: Optional[Resample], up: bool) -> None:
        super().__init__()
        self.up = up
        self.resnets = nn.ModuleList(resnets)
        if attentions is not None:
            self.attentions = nn.ModuleList(attentions)
        if resampler is not None:
            setattr(self, "upsamplers" if up else "downsamplers", nn.ModuleList([resampler]))

    def forward(self, h: torch.Tensor, temb: torch.Tensor, skips: Optional[list] = None):
        """Down: (h, [outputs kept for the up path]); up: h, popping ``skips``."""
        kept = []
        attentions = getattr(self, "attentions", [None] * len(self.resnets))
        for resnet, attn in zip(self.resnets, attentions):
            if self.up:
                h = torch.cat([h, skips.pop()], dim=1)
            h = resnet(h, temb)
            if attn is not None:
                h = attn(h)
            kept.append(h)
        resampler = getattr(self, "upsamplers" if self.up else "downsamplers", None)
        if resampler is not None:
            h = resampler[0](h)
            kept.append(h)
        return h if self.up else (h, kept)


class MidBlock(nn.Module):
    def __init__(self, resnets: list[ResBlock], attentions: Optional[list[SelfAttention]]) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions is not None:
            self.attentions = nn.ModuleList(attentions)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.resnets[0](h, temb)
        if hasattr(self, "attentions"):
            h = self.attentions[0](h)
        return self.resnets[1](h, temb)


class UNetOutput:
    """``net(x, t).sample``, as samplers call every UNet (diffusers' UNet2DOutput)."""

    def __init__(self, sample: torch.Tensor) -> None:
        self.sample = sample


class UNet2D(nn.Module):
    """eps_theta(x_t, t) for DDPM checkpoints in diffusers' UNet2DModel layout (see the module docstring)."""

    def __init__(self, config: UNet2DConfig) -> None:
        super().__init__()
        why = unsupported(dataclasses.asdict(config))
        if why:
            raise ValueError(f"UNet2D does not build {why}")
        self.config = c = config
        ch, g, eps, shift = tuple(c.block_out_channels), c.norm_num_groups, c.norm_eps, \
            c.resnet_time_scale_shift == "scale_shift"
        tdim = c.time_embedding_dim or ch[0] * 4

        def res(cin, cout, scale=1.0):
            return ResBlock(cin, cout, tdim, g, eps, c.dropout, shift, scale)

        def attn(width, scale=1.0, groups=g):
            return SelfAttention(width, c.attention_head_dim or width, groups, eps, scale)

        self.conv_in = nn.Conv2d(c.in_channels, ch[0], 3, padding=1)
        self.time_embedding = TimeMLP(ch[0], tdim)
        self.down_blocks = nn.ModuleList()
        cout = ch[0]
        for i, kind in enumerate(c.down_block_types):
            cin, cout = cout, ch[i]
            has_attn = kind == "AttnDownBlock2D"
            self.down_blocks.append(Block(
                [res(cin if k == 0 else cout, cout) for k in range(c.layers_per_block)],
                [attn(cout) for _ in range(c.layers_per_block)] if has_attn else None,
                Resample(cout, True, c.downsample_padding) if i < len(ch) - 1 else None, up=False))
        self.mid_block = None
        if c.mid_block_type:
            s = c.mid_block_scale_factor
            # diffusers: the mid attention's norm is attn_norm_num_groups, else the resnets' groups, but none at all
            # with scale-shift conditioning
            groups = c.attn_norm_num_groups or (None if shift else g)
            self.mid_block = MidBlock([res(ch[-1], ch[-1], s), res(ch[-1], ch[-1], s)],
                                      [attn(ch[-1], s, groups)] if c.add_attention else None)
        self.up_blocks = nn.ModuleList()
        rev = ch[::-1]
        cout = rev[0]
        for i, kind in enumerate(c.up_block_types):
            prev, cout, skip_in = cout, rev[i], rev[min(i + 1, len(ch) - 1)]
            n = c.layers_per_block + 1
            resnets = [res((prev if k == 0 else cout) + (skip_in if k == n - 1 else cout), cout) for k in range(n)]
            self.up_blocks.append(Block(resnets, [attn(cout) for _ in range(n)] if kind == "AttnUpBlock2D" else None,
                                        Resample(cout, False) if i < len(ch) - 1 else None, up=True))
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], c.out_channels, 3, padding=1)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def forward(self, sample: torch.Tensor, timestep) -> UNetOutput:
        """diffusers' argument names (callers pass them by keyword); ``timestep``: one for all, or one per item."""
        c, x, t = self.config, sample, timestep
        if not torch.is_tensor(t):
            t = torch.tensor([t], device=x.device)
        t = t.reshape(-1).to(x.device).expand(x.shape[0]) if t.numel() == 1 else t.to(x.device)
        temb = self.time_embedding(timestep_embedding(t, c.block_out_channels[0], c.flip_sin_to_cos,
                                                      c.freq_shift).to(x.dtype))
        if c.center_input_sample:
            x = 2 * x - 1.0
        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            h, kept = block(h, temb)
            skips += kept
        if self.mid_block is not None:
            h = self.mid_block(h, temb)
        for block in self.up_blocks:
            h = block(h, temb, skips)
        return UNetOutput(self.conv_out(F.silu(self.conv_norm_out(h))))


_OLD_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def load_state(net: UNet2D, state: dict) -> None:
    """Strict ``load_state_dict``, after renaming pre-0.14 attention weights (query -> to_q, ..., proj_attn ->
    to_out.0); 1x1-conv-shaped attention weights (from the original DDPM conversion) are flattened."""
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if "attentions" in parts and len(parts) >= 2 and parts[-2] in _OLD_ATTENTION:
            key = ".".join(parts[:-2] + [_OLD_ATTENTION[parts[-2]], parts[-1]])
            if value.ndim == 4:
                value = value[:, :, 0, 0]
        renamed[key] = value
    net.load_state_dict(renamed)
