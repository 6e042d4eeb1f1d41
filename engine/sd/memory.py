"""Where and how a Stable Diffusion job computes: the precision and the memory savers, chosen from free GPU memory.

On a CUDA GPU the networks run in float16 (or bfloat16: ``INPAINT_STUDIO_SD_PRECISION=bf16``; ``fp32`` turns
half precision off); a VAE whose config asks for it (SDXL's ``force_upcast``: its fp16 activations overflow) stays
in float32 unless bfloat16 is in use. On the CPU everything is float32.

``plan_memory`` is a pure function of the free memory, the weights' size and the working side, so it is tested
without a GPU. The activation estimates are rough and deliberately generous (fp16, PyTorch's scaled-dot-product
attention, classifier-free guidance batch of 2): a UNet step needs ~0.5 GB per image at 512 px for SD 1.x/2.x and
~1.5 GB per image at 1024 px for SDXL, growing with the pixel count; a VAE decode ~1 GB at 512 px in fp16 (double
in fp32), growing with the pixel count. In order of cost the savers are: VAE tiling (diffusers' tiled decode, a
little slower, seams blended), attention slicing (attention in chunks), then model CPU offload (each part moved to
the GPU only while it runs: text encoders, then the UNet, then the VAE).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

GB = 1024 ** 3
MARGIN = 0.75 * GB
PRECISION_ENV = "INPAINT_STUDIO_SD_PRECISION"


@dataclass(frozen=True)
class MemoryPlan:
    offload: bool = False  # model CPU offload: each part on the GPU only while it runs
    attention_slicing: bool = False
    vae_tiling: bool = False
    note: str = ""  # one line for the status bar


def unet_activations(arch: str, side: int, batch: int) -> float:
    per = 1.5 * GB * (side / 1024) ** 2 if arch == "sdxl" else 0.5 * GB * (side / 512) ** 2
    return per * batch


def vae_activations(side: int, fp32: bool) -> float:
    return 1.0 * GB * (side / 512) ** 2 * (2 if fp32 else 1)


def plan_memory(free: float, weights: float, unet_weights: float, arch: str, side: int, batch: int = 2,
                vae_fp32: bool = False) -> MemoryPlan:
    """The cheapest set of savers under which the job should fit in ``free`` bytes of GPU memory."""
    unet_act = unet_activations(arch, side, batch)
    vae_act = vae_activations(side, vae_fp32)
    tiled_vae = vae_activations(min(side, 512), vae_fp32)
    if weights + max(unet_act, vae_act) + MARGIN <= free:
        return MemoryPlan(note=f"{free / GB:.1f} GB free: everything on the GPU")
    tiling = weights + vae_act + MARGIN > free
    vae_need = tiled_vae if tiling else vae_act
    if weights + max(unet_act, vae_need) + MARGIN <= free:
        return MemoryPlan(vae_tiling=tiling, note=f"{free / GB:.1f} GB free: VAE tiling")
    sliced = unet_act * 0.5
    if weights + max(sliced, vae_need) + MARGIN <= free:
        return MemoryPlan(attention_slicing=True, vae_tiling=tiling,
                          note=f"{free / GB:.1f} GB free: attention slicing" + (", VAE tiling" if tiling else ""))
    fits = unet_weights + sliced + MARGIN <= free
    return MemoryPlan(offload=True, attention_slicing=True, vae_tiling=True,
                      note=f"{free / GB:.1f} GB free: parts moved to the GPU one at a time, attention slicing, VAE "
                           f"tiling" + ("" if fits else " (may still run out of memory: use the CPU or a smaller "
                                                         "model)"))


def precision(device_type: str) -> str:
    """"fp32" on the CPU; on CUDA "fp16" unless ``INPAINT_STUDIO_SD_PRECISION`` says "bf16" or "fp32"."""
    if device_type != "cuda":
        return "fp32"
    want = os.environ.get(PRECISION_ENV, "").strip().lower() or "fp16"
    return want if want in ("fp16", "bf16", "fp32") else "fp16"
