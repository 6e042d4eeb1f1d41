"""Where the learned models compute: a CUDA GPU when there is one, else the CPU.

``INPAINT_STUDIO_DEVICE`` = ``auto`` (the default) | ``cpu`` | ``cuda`` | ``cuda:N`` overrides the choice, until
the editor's *Fill > Use the GPU when there is one* makes one (``choose``; kept in this module rather than written
to the environment, which a worker thread may be reading from C at the same time). Read at the start of every
job, so a change applies to the next Fill.

The convention each family follows: networks and input tensors move to ``compute_device()``, results come back
with ``.cpu()`` before numpy, and sampling noise is drawn on the CPU from the job's seed and then moved, so a seed
gives the same noise on any device (the fills still differ a little: GPUs round differently, and cuDNN uses TF32
by default). A loaded model is cached once and moved in place to the device of the latest job, so turning the
GPU off leaves no second copy there (Stable Diffusion is GBs). The face model is the exception: a 64 px cVAE
answers an attribute toggle in milliseconds on the CPU, and a GPU round trip would not make it faster.

torch is imported inside the functions: the editor uses this module on its GUI thread, which never imports torch.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from engine.api import InpaintError

if TYPE_CHECKING:
    import torch

ENV = "INPAINT_STUDIO_DEVICE"
_chosen: str | None = None  # the editor's choice ("auto" or "cpu"); None: the environment decides


def choose(want: str | None) -> None:
    """Set the device later jobs use ("auto", "cpu", ...), over ``INPAINT_STUDIO_DEVICE``; None: back to it."""
    global _chosen
    _chosen = want


def chosen() -> str:
    """The device setting in force, as written ("auto" when nothing is set)."""
    want = _chosen if _chosen is not None else os.environ.get(ENV, "")
    return want.strip().lower() or "auto"


def compute_device(want: str | None = None) -> torch.device:
    """The device ``want`` names (a training script's ``--device``), by default the setting in force (``chosen``);
    "auto": CUDA when available, the CPU otherwise."""
    import torch

    source = "--device" if want is not None else ENV
    want = chosen() if want is None else want.strip().lower() or "auto"
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(want)
    except RuntimeError:
        raise InpaintError(f"{source}={want!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise InpaintError(f"{source}={want!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cpu":
        return torch.device("cpu")  # "cpu:1" is the same CPU: one cache entry
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InpaintError(f"{source}={want}: this torch build or machine has no CUDA GPU; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InpaintError(f"{source}={want}: there are {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def describe(device: torch.device) -> str:
    """A short label for the status bar: "CPU (2 threads)" or "GPU: <name>"."""
    import torch

    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads)"


def seeded_noise(shape: tuple[int, ...] | torch.Size, generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise drawn on ``generator``'s device (the CPU for ``torch.Generator()``, and without one),
    then moved to ``like``'s device and dtype: a seeded CPU generator gives the same noise whatever the device.

    ``generator`` may be a list with one generator per batch item (``engine.runner.run_batch``): item i then gets
    exactly the noise a batch of one would draw from generator i, so a folder filled in batches gives each image
    the fill it gets alone (up to float rounding: the network's sums may run in another order at another batch
    size)."""
    import torch

    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        return torch.cat([seeded_noise((1, *shape[1:]), g, like) for g in generator])
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(tuple(shape), generator=generator, device=device).to(like.device, like.dtype)
