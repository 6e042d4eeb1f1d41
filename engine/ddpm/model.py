"""DDPM networks, the noise schedule, and loading/saving of diffusers-format checkpoints.

Two denoisers ``eps_theta(x_t, t)`` are available (both predict the noise, Ho et al. 2020 eq. 11/14):

- ``"diffusers"``: diffusers' ``UNet2DModel`` with a small config (the shipped default: every diffusers DDPM
  checkpoint then loads the same way, and forward hooks see the same module names).
- ``"compact"``: the project's own compact UNet after the seed paper (Zagreb, 000): residual blocks of
  depthwise-separable convolutions (MobileNet style) with GroupNorm and a time-embedding MLP whose output is added
  to the features. Kept for the comparison in docs/ddpm.md.

Checkpoint folder layout (what ``save_pretrained`` writes and ``load_ddpm`` reads):

    config.json                          the UNet config (diffusers' own for UNet2DModel)
    diffusion_pytorch_model.safetensors  the weights (EMA weights for trained models)
    scheduler_config.json                the beta schedule (diffusers DDPMScheduler format)

A full diffusers pipeline folder (``model_index.json`` + ``unet/`` + ``scheduler/``) and a hub id load too.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
SCHEDULER_NAME = "scheduler_config.json"


# ----------------------------------------------------------------------------------------------------------------
# Noise schedule
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ScheduleConfig:
    """The forward process q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) (Ho et al. 2020 eq. 2).
    Field names follow diffusers' DDPMScheduler so the JSON is interchangeable with it."""

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"  # "linear" (Ho et al.) | "squaredcos_cap_v2" (cosine, Nichol & Dhariwal 2021)

    @classmethod
    def from_dict(cls, d: dict) -> "ScheduleConfig":
        known = {k: d[k] for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule") if k in d}
        return cls(**known)


def make_betas(cfg: ScheduleConfig) -> torch.Tensor:
    """beta_1..beta_T (float32, index t-1 stored at t-1 as in diffusers: betas[t] for t = 0..T-1)."""
    T = cfg.num_train_timesteps
    if cfg.beta_schedule == "linear":
        return torch.linspace(cfg.beta_start, cfg.beta_end, T, dtype=torch.float32)
    if cfg.beta_schedule in ("squaredcos_cap_v2", "cosine"):
        # alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi/2), s = 0.008; beta_t = 1 - abar(t+1)/abar(t), cap 0.999
        def abar(u: float) -> float:
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)], dtype=torch.float32)
    raise ValueError(f"unknown beta_schedule {cfg.beta_schedule!r}")


class NoiseSchedule(nn.Module):
    """Schedule tensors as buffers (moved with ``.to(device)``), with closed-form helpers."""

    def __init__(self, cfg: ScheduleConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ScheduleConfig()
        betas = make_betas(self.cfg)
        alphas = 1.0 - betas
        self.register_buffer("betas", betas)  # beta_t
        self.register_buffer("alphas", alphas)  # alpha_t = 1 - beta_t
        self.register_buffer("alphas_cumprod", torch.cumprod(alphas, 0))  # alpha_bar_t = prod_{s<=t} alpha_s

    @property
    def num_train_timesteps(self) -> int:
        return self.cfg.num_train_timesteps

    def alpha_bar(self, t: int) -> torch.Tensor:
        """alpha_bar_t, with alpha_bar_{-1} = 1 (the clean image) for t < 0."""
        return self.alphas_cumprod[t] if t >= 0 else torch.ones((), device=self.alphas_cumprod.device)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (Ho et al. 2020 eq. 4); ``t`` per batch item."""
        ab = self.alphas_cumprod[t].view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) (eq. 4 solved for x_0, cf. eq. 15)."""
        ab = self.alpha_bar(t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def to_json(self) -> dict:
        return {"_class_name": "DDPMScheduler", **asdict(self.cfg), "prediction_type": "epsilon",
                "clip_sample": True, "variance_type": "fixed_small"}


# ----------------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------------
def diffusers_unet_config(sample_size: int = 28, channels: tuple[int, ...] = (32, 64, 64), layers_per_block: int = 1,
                          attention: bool = True, groups: int = 8) -> dict:
    """A small UNet2DModel config for 1-channel images; attention only at the lowest resolution."""
    n = len(channels)
    down = ["DownBlock2D"] * n
    up = ["UpBlock2D"] * n
    if attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return dict(sample_size=sample_size, in_channels=1, out_channels=1, block_out_channels=tuple(channels),
                down_block_types=tuple(down), up_block_types=tuple(up), layers_per_block=layers_per_block,
                norm_num_groups=groups, attention_head_dim=channels[-1] // 2 if attention else None,
                add_attention=attention)


def build_diffusers_unet(**kwargs) -> nn.Module:
    from diffusers import UNet2DModel

    return UNet2DModel(**diffusers_unet_config(**kwargs))


@dataclass
class CompactUNetConfig:
    """The seed's network: depthwise-separable residual blocks, time embedding added to the features."""

    _class_name: str = "CompactUNet"
    sample_size: int = 28
    in_channels: int = 1
    out_channels: int = 1
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    layers_per_block: int = 2
    time_embedding_dim: int = 128
    norm_num_groups: int = 8


class _Output:
    """Mimics diffusers' ``UNet2DOutput`` so samplers call every network as ``net(x, t).sample``."""

    def __init__(self, sample: torch.Tensor) -> None:
        self.sample = sample


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal position embedding of the timestep (Vaswani et al. 2017, as in Ho et al. 2020)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class SepConv(nn.Module):
    """Depthwise 3x3 convolution followed by a pointwise 1x1 (Howard et al. 2017, MobileNet)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class SepResBlock(nn.Module):
    """GroupNorm -> SiLU -> SepConv, + time embedding, GroupNorm -> SiLU -> SepConv, residual."""

    def __init__(self, cin: int, cout: int, tdim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = SepConv(cin, cout)
        self.time_proj = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = SepConv(cout, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class CompactUNet(nn.Module):
    """Encoder/decoder with skip connections; resolution halves after every level but the last."""

    def __init__(self, config: CompactUNetConfig) -> None:
        super().__init__()
        self.config = config
        ch, L, g, tdim = config.block_out_channels, config.layers_per_block, config.norm_num_groups, \
            config.time_embedding_dim
        self.time_mlp = nn.Sequential(nn.Linear(ch[0], tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.conv_in = nn.Conv2d(config.in_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [ch[0]]
        cur = ch[0]
        for i, c in enumerate(ch):
            for _ in range(L):
                self.down.append(SepResBlock(cur, c, tdim, g))
                cur = c
                skips.append(cur)
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skips.append(cur)
        self.mid = SepResBlock(cur, cur, tdim, g)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, c in reversed(list(enumerate(ch))):
            for _ in range(L + 1):
                self.up.append(SepResBlock(cur + skips.pop(), c, tdim, g))
                cur = c
            if i > 0:
                self.upsample.append(nn.Conv2d(cur, cur, 3, padding=1))
        self.norm_out = nn.GroupNorm(min(g, cur), cur)
        self.conv_out = nn.Conv2d(cur, config.out_channels, 3, padding=1)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def forward(self, x: torch.Tensor, t) -> _Output:
        if not torch.is_tensor(t):
            t = torch.tensor([t], device=x.device)
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t
        temb = self.time_mlp(timestep_embedding(t, self.config.block_out_channels[0]).to(x.dtype))
        L, n = self.config.layers_per_block, len(self.config.block_out_channels)
        h = self.conv_in(x)
        hs = [h]
        blocks = iter(self.down)
        for i in range(n):
            for _ in range(L):
                h = next(blocks)(h, temb)
                hs.append(h)
            if i < n - 1:
                h = self.downsample[i](h)
                hs.append(h)
        h = self.mid(h, temb)
        blocks = iter(self.up)
        for i in range(n):
            for _ in range(L + 1):
                skip = hs.pop()
                if skip.shape[-2:] != h.shape[-2:]:
                    h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
                h = next(blocks)(torch.cat([h, skip], 1), temb)
            if i < n - 1:
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return _Output(self.conv_out(F.silu(self.norm_out(h))))

    def save_pretrained(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, folder / WEIGHTS_NAME)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "CompactUNet":
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        net = cls(CompactUNetConfig(**{k: v for k, v in cfg.items() if k in CompactUNetConfig.__dataclass_fields__}))
        net.load_state_dict(load_file(folder / WEIGHTS_NAME))
        return net


def build_unet(arch: str = "diffusers", **kwargs) -> nn.Module:
    if arch == "diffusers":
        return build_diffusers_unet(**kwargs)
    if arch == "compact":
        return CompactUNet(CompactUNetConfig(**kwargs))
    raise ValueError(f"unknown arch {arch!r} (diffusers | compact)")


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint folders
# ----------------------------------------------------------------------------------------------------------------
def save_ddpm(folder: str | Path, unet: nn.Module, schedule: NoiseSchedule, extra: dict | None = None) -> Path:
    """Write ``unet`` (config.json + safetensors) and ``scheduler_config.json``; ``extra`` goes to training.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(unet, CompactUNet):
        unet.save_pretrained(folder)
    else:
        unet.save_pretrained(folder, safe_serialization=True)
    (folder / SCHEDULER_NAME).write_text(json.dumps(schedule.to_json(), indent=2))
    if extra is not None:
        (folder / "training.json").write_text(json.dumps(extra, indent=2))
    return folder


def load_ddpm(path_or_id: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, NoiseSchedule]:
    """(unet in eval mode, schedule) from a checkpoint folder, a diffusers pipeline folder, or a hub id.

    The schedule comes from ``scheduler_config.json`` (flat folder) or ``scheduler/scheduler_config.json``
    (pipeline folder); diffusers' defaults (linear 1e-4..0.02, T = 1000) when neither exists.
    """
    p = Path(path_or_id)
    sched_cfg: dict = {}
    if p.exists():
        unet_dir = p / "unet" if (p / "unet" / "config.json").exists() else p
        for cand in (p / SCHEDULER_NAME, p / "scheduler" / SCHEDULER_NAME):
            if cand.exists():
                sched_cfg = json.loads(cand.read_text())
                break
        cfg = json.loads((unet_dir / "config.json").read_text())
        if cfg.get("_class_name") == "CompactUNet":
            unet: nn.Module = CompactUNet.from_pretrained(unet_dir)
        else:
            from diffusers import UNet2DModel

            unet = UNet2DModel.from_pretrained(unet_dir, low_cpu_mem_usage=False)  # no `accelerate` needed
    else:  # a hub id (needs a network)
        from diffusers import DDPMScheduler, UNet2DModel

        try:
            unet = UNet2DModel.from_pretrained(str(path_or_id), subfolder="unet")
        except (OSError, EnvironmentError):
            unet = UNet2DModel.from_pretrained(str(path_or_id))
        try:
            sched_cfg = dict(DDPMScheduler.load_config(str(path_or_id), subfolder="scheduler"))
        except (OSError, EnvironmentError):
            sched_cfg = {}
    schedule = NoiseSchedule(ScheduleConfig.from_dict(sched_cfg))
    return unet.to(device).eval(), schedule.to(device)
