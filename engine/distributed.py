"""Distributed training for the flat training scripts: the same script runs alone or under ``torchrun``.

    torchrun --nproc_per_node 4 -m engine.ddpm.train --out runs/ddpm --device cuda     # 4 GPUs, NCCL
    torchrun --nproc_per_node 2 -m engine.face.train --out runs/face --device cpu      # 2 CPU processes, Gloo

Under torchrun (``WORLD_SIZE`` > 1) ``setup`` joins the process group (NCCL on CUDA, Gloo on CPUs) and gives each
rank its device (``cuda:LOCAL_RANK``); scripts wrap their networks with ``wrap`` (DistributedDataParallel: the
gradients are averaged across ranks in ``backward``, so every rank keeps the same weights; a network DDP cannot
wrap averages them with ``average_gradients`` after ``broadcast``), draw their batches from
their own ``shard`` of the data with a rank-specific seed, write checkpoints, grids and logs only where
``is_main``, and decide to stop together (``any_rank``: a wall-clock budget must not stop one rank before the others,
which would leave them waiting in an all-reduce). Alone, every function is a no-op and nothing is imported.

Every such script also takes its command line from its config dataclass (``parse_config``) and, where it has one,
the same learning-rate schedule (``lr_at``: linear warm-up, cosine decay to 10 %).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup(device: torch.device) -> Dist:
    """Join the torchrun process group if there is one; ``device`` is the script's choice (``--device``): on CUDA
    each rank takes the GPU of its local rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=device)
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), device=device)


def wrap(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """``model`` (already on ``d.device``) for training: DistributedDataParallel under torchrun, else itself."""
    if not d.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DDP wrapper (what is saved, and what an EMA copies)."""
    return getattr(model, "module", model)


def broadcast(module: torch.nn.Module, d: Dist) -> None:
    """Rank 0's parameters and buffers on every rank (for networks trained without the DDP wrapper)."""
    if d.active:
        import torch.distributed as dist

        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def average_gradients(module: torch.nn.Module, d: Dist) -> None:
    """The gradients of ``module`` averaged over the ranks, in one all-reduce (what DDP does in ``backward``): for
    networks DDP cannot wrap, such as a GAN discriminator called on real, fake and mislabelled batches in one step
    (DDP allows one forward per backward)."""
    if not d.active:
        return
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= d.world
    for g, avg in zip(grads, _unflatten_dense_tensors(flat, grads)):
        g.copy_(avg)


def shard(n: int, d: Dist) -> slice:
    """This rank's part of n items: every world-th item from its rank (sizes differ by at most one)."""
    return slice(d.rank, n, d.world)


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank when it is true on any (a stop decision all ranks take together)."""
    if not d.active:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist

        dist.barrier()


def teardown(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of ``base`` at ``total``."""
    import math

    warm = min(1.0, (step + 1) / max(1, warmup))
    return base * warm * (0.55 + 0.45 * math.cos(math.pi * min(1.0, step / max(1, total))))


def parse_config(cls, argv=None, doc: str = ""):
    """(config dataclass from --flags named like its fields, resume?): ``--no-resume`` starts afresh."""
    import argparse
    import dataclasses

    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    sequences = {}
    for f in dataclasses.fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=default)
        elif isinstance(default, (tuple, list)):  # e.g. channel widths: --channels 32 64 64
            sequences[f.name] = type(default)
            p.add_argument(flag, type=int, nargs="+", default=default)
        else:
            p.add_argument(flag, type=type(default), default=default)
    p.add_argument("--no-resume", action="store_true", help="start fresh even if --out holds a checkpoint")
    a = vars(p.parse_args(argv))
    no_resume = a.pop("no_resume")
    return cls(**{k: sequences[k](v) if k in sequences else v for k, v in a.items()}), not no_resume
