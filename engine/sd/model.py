"""One loaded Stable Diffusion checkpoint: its networks, where they sit, and the few operations a fill needs.

``load(path, device)`` detects the type (``engine.sd.checkpoint``), loads the parts once (``engine.sd.loading``)
into ``engine.weights.CACHE`` and places them for the job (``SDModel.place``): float32 on the CPU, half precision on
CUDA, with the memory savers of ``engine.sd.memory``. Only the most recently used checkpoint stays in memory.

Prompt encoding follows each generation's training: SD 1.x/2.x use the text encoder's last hidden state; SDXL
concatenates the penultimate hidden states of both encoders and adds the second one's pooled projection and the
size / crop micro-conditioning (Podell et al. 2023, Sec. 2.2), with zeros for an empty negative prompt as its
config asks. ``cancel_hooks`` checks the job's CancelToken before every UNet and VAE block, so a cancel lands
within one block's time even in the middle of a slow CPU step.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.sd.checkpoint import Kind
from engine.sd.memory import MemoryPlan, precision
from engine.weights import CACHE, cache_key

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# Linear maps from the scaled latent to RGB in [-1, 1] for previews without a VAE decode (rows: latent channels;
# the widely used factors, fitted by regression on decoded images; SDXL's VAE has its own, plus a bias).
LATENT_RGB = {
    "sd1": (torch.tensor([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
                          [-0.2120, -0.2616, -0.7177]]), torch.zeros(3)),
    "sdxl": (torch.tensor([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
                           [-0.3165, -0.2492, -0.2188]]), torch.tensor([0.1084, -0.0175, -0.0011])),
}


@dataclass
class Conditioning:
    """What the UNet is conditioned on for one job: ``context`` (B x 77 x D; B = 2 with classifier-free guidance,
    [negative, prompt]) and, for SDXL, ``added`` (pooled text embedding and size ids)."""

    context: torch.Tensor
    added: dict | None = None

    @property
    def guided(self) -> bool:
        return self.context.shape[0] == 2


class SDModel:
    def __init__(self, source: Path, kind: Kind, parts: dict) -> None:
        self.source, self.kind = Path(source), kind
        self.unet = parts["unet"]
        self.vae = parts["vae"]
        self.text_encoders = list(parts["text_encoders"])
        self.tokenizers = list(parts["tokenizers"])
        self.scheduler_config = dict(parts["scheduler_config"])
        self.device = torch.device("cpu")
        self.plan = MemoryPlan()
        self.cancel_token = None  # the running job's CancelToken, read by ``cancel_hooks``

    # --- shapes ------------------------------------------------------------------------------------------------
    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def resolution(self) -> int:
        return self.latent_size * self.vae_scale

    @property
    def inpainting(self) -> bool:
        return int(self.unet.config.in_channels) == 9

    @property
    def scaling_factor(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215) or 0.18215)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def text_encoder(self):
        return self.text_encoders[0]

    @property
    def tokenizer(self):
        return self.tokenizers[0]

    def networks(self) -> list[torch.nn.Module]:
        return [self.unet, self.vae, *self.text_encoders]

    def weights_bytes(self, dtype: torch.dtype | None = None) -> tuple[int, int]:
        """(all networks, the UNet) in bytes at ``dtype`` (default: as they are)."""
        def size(m):
            return sum(p.numel() * (torch.finfo(dtype).bits // 8 if dtype else p.element_size())
                       for p in m.parameters())
        return sum(size(m) for m in self.networks()), size(self.unet)

    # --- placement ---------------------------------------------------------------------------------------------
    def to(self, device) -> "SDModel":
        """Every part on ``device`` (the weights' dtype follows the device), no memory savers."""
        return self.place(torch.device(device), MemoryPlan())

    def place(self, device: torch.device, plan: MemoryPlan) -> "SDModel":
        dtype = DTYPES[precision(device.type)]
        vae_dtype = torch.float32 if (dtype == torch.float16 and getattr(self.vae.config, "force_upcast", False)) \
            else dtype
        home = torch.device("cpu") if plan.offload else device
        for net in [self.unet, *self.text_encoders]:
            _move(net, home, dtype)
        _move(self.vae, home, vae_dtype)
        if plan.attention_slicing:
            self.unet.set_attention_slice("auto")
        elif self.plan.attention_slicing:
            self.unet.set_default_attn_processor()
        if plan.vae_tiling:  # tiles of 512 px (diffusers' default is the VAE's sample size: 1024 for SDXL)
            self.vae.enable_tiling()
            self.vae.tile_sample_min_size = min(512, self.vae.tile_sample_min_size)
            self.vae.tile_latent_min_size = self.vae.tile_sample_min_size // self.vae_scale
        else:
            self.vae.disable_tiling()
        self.device, self.plan = device, plan
        return self

    @contextlib.contextmanager
    def on_device(self, *modules: torch.nn.Module):
        """With model CPU offload, ``modules`` move to the compute device for the block and back after it."""
        if not self.plan.offload:
            yield
            return
        for m in modules:
            m.to(self.device)
        try:
            yield
        finally:
            for m in modules:
                m.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # --- text --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(context B x 77 x D, pooled B x P or None) for ``prompts``."""
        from transformers import CLIPTextModelWithProjection

        hidden, pooled = [], None
        with self.on_device(*self.text_encoders):
            for tok, te in zip(self.tokenizers, self.text_encoders):
                ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                          return_tensors="pt").input_ids.to(self.device)
                if self.kind.arch != "sdxl":
                    return te(ids)[0].float(), None
                out = te(ids, output_hidden_states=True)
                hidden.append(out.hidden_states[-2].float())
                if isinstance(te, CLIPTextModelWithProjection):
                    pooled = out.text_embeds.float()
        return torch.cat(hidden, dim=-1), pooled

    def conditioning(self, prompt: str, negative: str, cfg_scale: float, size: tuple[int, int]) -> Conditioning:
        """The job's conditioning: [negative, prompt] when ``cfg_scale`` > 1 (classifier-free guidance, Ho & Salimans
        2022), else the prompt alone; SDXL's added conditioning for a ``size`` = (height, width) image."""
        guided = cfg_scale > 1.0
        zero_negative = self.kind.arch == "sdxl" and not negative.strip()
        prompts = [negative, prompt] if guided and not zero_negative else [prompt]
        context, pooled = self.encode_text(prompts)
        if guided and zero_negative:
            context = torch.cat([torch.zeros_like(context), context])
            pooled = torch.cat([torch.zeros_like(pooled), pooled]) if pooled is not None else None
        if self.kind.arch != "sdxl":
            return Conditioning(context)
        h, w = size
        ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=torch.float32, device=context.device)
        return Conditioning(context, {"text_embeds": pooled, "time_ids": ids.expand(context.shape[0], -1)})

    # --- networks ----------------------------------------------------------------------------------------------
    def unet_out(self, z: torch.Tensor, t, cond: Conditioning, extra: torch.Tensor | None = None) -> torch.Tensor:
        """The UNet's raw output (noise or v) for z (B x 4 x h x w), batched over the conditioning; ``extra`` =
        [mask, masked-image latent] for 9-channel inpainting UNets."""
        b = cond.context.shape[0]
        x = z.expand(b, *z.shape[1:]) if z.shape[0] != b else z
        if extra is not None:
            x = torch.cat([x, extra.expand(b, *extra.shape[1:]).to(x)], dim=1)
        added = None if cond.added is None else {k: v.to(self.dtype) for k, v in cond.added.items()}
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(b)
        return self.unet(x.to(self.dtype), t, encoder_hidden_states=cond.context.to(self.dtype),
                         added_cond_kwargs=added).sample.float()

    @torch.no_grad()
    def vae_encode(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W in [-1, 1] -> scaled latents (the posterior mean, deterministic)."""
        with self.on_device(self.vae):
            vae_dtype = next(self.vae.parameters()).dtype
            lat = self.vae.encode(images.to(self.device, vae_dtype)).latent_dist.mean
        return lat.float() * self.scaling_factor

    @torch.no_grad()
    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        with self.on_device(self.vae):
            vae_dtype = next(self.vae.parameters()).dtype
            img = self.vae.decode((latents / self.scaling_factor).to(vae_dtype)).sample
        return img.float().clamp(-1, 1)


def _move(net: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """``net`` to ``device`` / ``dtype`` in place, only when it is elsewhere (plain ``nn.Module.to``: diffusers' own
    ``to`` warns about dtype casts the engine makes on purpose)."""
    p = next(net.parameters())
    if p.device != device or p.dtype != dtype:
        torch.nn.Module.to(net, device=device, dtype=dtype)


def latent_preview(latents: torch.Tensor, which: str = "sd1") -> "np.ndarray":  # noqa: F821
    """1 x 4 x h x w scaled latent (any device) -> h x w x 3 uint8 through the fixed linear projection."""
    factors, bias = LATENT_RGB[which]
    rgb = torch.einsum("bchw,cd->bdhw", latents[:, :4].detach().float().cpu(), factors) + bias.view(1, 3, 1, 1)
    return ((rgb[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def pixel_to_latent_mask(hole: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B x 1 x H x W hole -> B x 1 x h x w, conservative: a latent cell is hole if any pixel under it is."""
    return (F.adaptive_max_pool2d(hole.float(), size) > 0).float()


@contextlib.contextmanager
def cancel_hooks(model: SDModel, cancel):
    """Check ``cancel`` before every UNet block and VAE block (diffusers pipelines' ``interrupt`` works between
    steps; this works inside one). The hooks are installed once per model and read the running job's token, so a
    job's generator that is collected late can never cancel the next job."""
    if not getattr(model, "_cancel_hooks", None):
        blocks = [*model.unet.down_blocks, model.unet.mid_block, *model.unet.up_blocks,
                  *model.vae.decoder.up_blocks, *model.vae.encoder.down_blocks]

        def check(*_):
            token = model.cancel_token
            if token is not None:
                token.check()
        model._cancel_hooks = [b.register_forward_pre_hook(check) for b in blocks if b is not None]
    model.cancel_token = cancel
    try:
        yield
    finally:
        if model.cancel_token is cancel:
            model.cancel_token = None


_current: list[str] = []  # the cache key of the checkpoint in memory (one at a time: they are gigabytes)


def load(path: str | Path, kind: Kind, device: torch.device | None = None) -> SDModel:
    """The checkpoint's SDModel, loaded once (``engine.weights.CACHE``); a different checkpoint first frees the
    previous one. Loaded in the dtype of ``device`` (float32 for the CPU), not moved."""
    from engine.sd import loading

    path = Path(path).expanduser()
    key = cache_key("sd", path, path.stat().st_mtime_ns)
    if _current and _current[0] != key:
        CACHE.drop(_current.pop())
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if not _current:
        _current.append(key)
    dtype = DTYPES[precision(device.type if device is not None else "cpu")]

    def build() -> SDModel:
        parts = (loading.load_folder if path.is_dir() else loading.load_single_file)(path, kind, dtype)
        return SDModel(path, kind, parts)

    return CACHE.get(key, build)
