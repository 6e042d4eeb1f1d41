"""DDPM networks and DDPM checkpoint folders (diffusers' layout); the noise schedule is engine.diffusion's.

Two denoisers ``eps_theta(x_t, t)`` are available (both predict the noise, Ho et al. 2020 eq. 11/14):

- ``"unet2d"``: ``engine.ddpm.unet2d.UNet2D``, the DDPM UNet in diffusers' ``UNet2DModel`` layout (config and
  parameter names), written here, with a small config (the shipped default: a diffusers DDPM checkpoint loads the
  same way, diffusers reads the folders it writes, and forward hooks see the same module names; diffusers itself
  is not imported).
- ``"compact"``: the project's own compact UNet after the seed paper (Zagreb, 000): residual blocks of
  depthwise-separable convolutions (MobileNet style) with GroupNorm and a time-embedding MLP whose output is added
  to the features. Kept for the comparison in docs/ddpm.md.

Checkpoint folder layout (what ``save_pretrained`` writes and ``load_ddpm`` reads):

    config.json                          the UNet config (diffusers' UNet2DModel config)
    diffusion_pytorch_model.safetensors  the weights (EMA weights for trained models)
    scheduler_config.json                the beta schedule (diffusers DDPMScheduler format)

A full diffusers pipeline folder (``model_index.json`` + ``unet/`` + ``scheduler/``) loads too. Only local folders
and only safetensors: a mistyped path is "no such folder", never a download, and a ``.bin`` pickle is never read.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from engine.api import InpaintError
from engine.atomic import write_atomic_path
from engine.ddpm.unet2d import UNet2D, UNet2DConfig, UNetOutput, load_state, timestep_embedding, unsupported
from engine.diffusion.schedule import NoiseSchedule, ScheduleConfig
from engine.weights import load_pretrained, save_pretrained

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
SCHEDULER_NAME = "scheduler_config.json"


# ----------------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------------
def unet2d_config(sample_size: int = 28, channels: tuple[int, ...] = (32, 64, 64), layers_per_block: int = 1,
                          attention: bool = True, groups: int = 8) -> dict:
    """A small UNet2DModel config (as a dict, diffusers' field names) for 1-channel images; attention only at the
    lowest resolution."""
    n = len(channels)
    down = ["DownBlock2D"] * n
    up = ["UpBlock2D"] * n
    if attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return dict(sample_size=sample_size, in_channels=1, out_channels=1, block_out_channels=tuple(channels),
                down_block_types=tuple(down), up_block_types=tuple(up), layers_per_block=layers_per_block,
                norm_num_groups=groups, attention_head_dim=channels[-1] // 2 if attention else None,
                add_attention=attention)


def build_unet2d(**kwargs) -> UNet2D:
    return UNet2D(UNet2DConfig.from_dict(unet2d_config(**kwargs)))


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

    def forward(self, x: torch.Tensor, t) -> UNetOutput:
        if not torch.is_tensor(t):
            t = torch.tensor([t], device=x.device)
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t
        emb = timestep_embedding(t, self.config.block_out_channels[0], flip_sin_to_cos=True, shift=0)
        temb = self.time_mlp(emb.to(x.dtype))
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
        return UNetOutput(self.conv_out(F.silu(self.norm_out(h))))

    def save_pretrained(self, folder: str | Path) -> None:
        save_pretrained(folder, self, self.config, weights_name=WEIGHTS_NAME)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "CompactUNet":
        return load_pretrained(folder, cls, CompactUNetConfig, weights_name=WEIGHTS_NAME)[0]


def build_unet(arch: str = "unet2d", **kwargs) -> nn.Module:
    if arch == "unet2d":
        return build_unet2d(**kwargs)
    if arch == "compact":
        return CompactUNet(CompactUNetConfig(**kwargs))
    raise ValueError(f"unknown arch {arch!r} (unet2d | compact)")


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


class _Positional(nn.Module):
    """The UNet returning a plain tensor (what ``torch.jit.trace`` can record)."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.unet(x, t)
        return out.sample if hasattr(out, "sample") else out[0]


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint folders
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class DDPM:
    """A loaded checkpoint: the noise-predicting UNet (eval mode, frozen) and its schedule, moved together."""

    unet: nn.Module
    schedule: NoiseSchedule
    _traces: dict = field(default_factory=dict, repr=False)

    def to(self, device: str | torch.device) -> "DDPM":
        before = next(self.unet.parameters()).device
        self.unet.to(device)
        self.schedule.to(device)
        if next(self.unet.parameters()).device != before:
            self._traces.clear()  # a trace holds the parameters it saw
        return self

    def traced(self, x: torch.Tensor, t: torch.Tensor) -> UNetOutput:
        """``unet(x, t)`` through a TorchScript trace of the UNet for this input shape (traced once, ~0.5 s): the
        same arithmetic without the Python of every module, which dominates at batch 1 on a CPU (MNIST UNet, one
        thread, measured on diffusers' class: forward 14 -> 8 ms, forward + backward 29 -> 23 ms; torch.export's
        module: no gain; docs/ddpm.md "Speed"). Autograd runs through it (MCG). Forward hooks on the UNet's modules
        do not fire: the sketch family calls ``unet`` itself."""
        key = (tuple(x.shape), x.dtype, x.device)
        fn = self._traces.get(key)
        if fn is None:
            import warnings

            plain = _Positional(self.unet)
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks, constant for one shape
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's; torch.export is no faster here
                try:
                    fn = torch.jit.trace(plain, (x.detach(), t), check_trace=False)
                except Exception:  # a torch without TorchScript, or a network it cannot record: the same, slower
                    fn = plain
            self._traces[key] = fn
        return UNetOutput(fn(x, t))

    @property
    def sample_size(self) -> int:
        return int(getattr(self.unet.config, "sample_size", 28) or 28)

    @property
    def channels(self) -> int:
        return int(getattr(self.unet.config, "in_channels", 1))


def save_ddpm(folder: str | Path, unet: nn.Module, schedule: NoiseSchedule, extra: dict | None = None) -> Path:
    """Write ``unet`` (config.json + safetensors) and ``scheduler_config.json``; ``extra`` goes to training.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(unet, UNet2D):
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}
        write_atomic_path(folder / WEIGHTS_NAME, lambda p: save_file(state, str(p)))
        write_atomic_path(folder / "config.json",
                          lambda p: p.write_text(json.dumps(unet.config.to_dict(), indent=2) + "\n"))
    elif isinstance(unet, CompactUNet):
        unet.save_pretrained(folder)
    else:  # a diffusers UNet2DModel (a folder whose config only diffusers builds)
        unet.save_pretrained(folder, safe_serialization=True)
    (folder / SCHEDULER_NAME).write_text(json.dumps(schedule.to_json(), indent=2))
    if extra is not None:
        (folder / "training.json").write_text(json.dumps(extra, indent=2))
    return folder


def load_ddpm(path: str | Path, device: str | torch.device = "cpu") -> DDPM:
    """A checkpoint folder or a diffusers pipeline folder, frozen, in eval mode; InpaintError (one line naming the
    folder) when it is missing, incomplete, or its weights do not fill the UNet.

    The schedule comes from ``scheduler_config.json`` (flat folder) or ``scheduler/scheduler_config.json``
    (pipeline folder); diffusers' defaults (linear 1e-4..0.02, T = 1000) when neither exists.
    """
    p = Path(path).expanduser()
    if not str(path).strip() or not p.is_dir():
        raise InpaintError(f"DDPM checkpoint folder not found: {p}")
    unet_dir = p / "unet" if (p / "unet" / "config.json").is_file() else p
    if not (unet_dir / "config.json").is_file():
        raise InpaintError(f"{p} is not a DDPM checkpoint: config.json is missing")
    sched_cfg: dict = {}
    for cand in (p / SCHEDULER_NAME, p / "scheduler" / SCHEDULER_NAME):
        if cand.is_file():
            sched_cfg = _read_json(cand)
            break
    cfg = _read_json(unet_dir / "config.json")
    if cfg.get("_class_name") == "CompactUNet":
        unet: nn.Module = CompactUNet.from_pretrained(unet_dir)
    elif unsupported(cfg) is None:
        unet = _load_own_unet2d(unet_dir, cfg)
    else:
        unet = _load_diffusers_unet2d(unet_dir)
    try:
        schedule = NoiseSchedule(ScheduleConfig.from_dict(sched_cfg))
    except (TypeError, ValueError) as exc:
        raise InpaintError(f"{p}: unusable scheduler config ({exc})") from None
    return DDPM(unet.eval().requires_grad_(False), schedule).to(device)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InpaintError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InpaintError(f"{path}: expected a JSON object")
    return data


def _load_own_unet2d(folder: Path, cfg: dict) -> UNet2D:
    """A UNet2DModel folder as ``UNet2D``; weights that do not fill it exactly are one InpaintError line."""
    from safetensors.torch import load_file

    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise InpaintError(f"{folder}: {WEIGHTS_NAME} is missing (only safetensors weights are read)")
    try:
        unet = UNet2D(UNet2DConfig.from_dict(cfg))
    except (TypeError, ValueError, RuntimeError) as exc:  # values of the right name that make no network
        raise InpaintError(f"{folder / 'config.json'}: no UNet can be built from it ({exc})") from None
    try:
        state = load_file(str(path))
    except Exception as exc:  # truncated, or not safetensors at all
        raise InpaintError(f"{path}: not a readable safetensors file ({str(exc).strip()[:200]})") from None
    try:
        load_state(unet, state)
    except RuntimeError as exc:
        missing = [k for k in unet.state_dict() if k not in state]
        why = f"{len(missing)} of the UNet's weights are missing (e.g. {missing[0]})" if missing else \
            str(exc).strip().splitlines()[0][:200]
        raise InpaintError(f"{path}: {why}: not this UNet's checkpoint") from None
    return unet


def _load_diffusers_unet2d(folder: Path) -> nn.Module:
    """A UNet2DModel config beyond what ``UNet2D`` builds (``engine.ddpm.unet2d.unsupported``), through diffusers,
    from safetensors only; weights that leave any parameter unfilled are refused (diffusers would otherwise start
    those at random and only warn)."""
    from diffusers import UNet2DModel

    if not (folder / WEIGHTS_NAME).is_file():
        raise InpaintError(f"{folder}: {WEIGHTS_NAME} is missing (only safetensors weights are read)")
    try:
        unet, info = UNet2DModel.from_pretrained(folder, use_safetensors=True, local_files_only=True,
                                                 low_cpu_mem_usage=False, output_loading_info=True)
    except Exception as exc:  # wrong shapes, truncated file, a config for another class
        text = str(exc).strip()
        why = text.splitlines()[0][:200] if text else type(exc).__name__
        raise InpaintError(f"{folder}: could not load the UNet ({why})") from None
    missing = info.get("missing_keys") or []
    if missing:
        raise InpaintError(f"{folder / WEIGHTS_NAME}: {len(missing)} of the UNet's weights are missing (e.g. "
                           f"{missing[0]}): not this UNet's checkpoint")
    return unet


class CountingUNet(torch.nn.Module):
    """Wraps a UNet and counts forward calls (tests and the benchmark)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet
        self.calls = 0

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self):
        return self.unet.dtype

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.unet(*args, **kwargs)
