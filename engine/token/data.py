"""Training data of the token family (the two domains), and the few lines of DDP every script here shares.

Domains:
- ``mnist``: MNIST (``engine.datasets.load_mnist``), 28 x 28 grey: the "train" split (50k) to train, "valid" to
  validate; the benchmark reads "test".
- ``face``: the project's procedural portraits (``engine.face.data.procedural_pool``), 64 x 64 RGB. Training seeds
  [0, FACE_TRAIN) lie in the range the face cVAE trains on, apart from the attribute classifier's
  (``CLASSIFIER_SEED``) and the held-out evaluation seeds (``EVAL_SEED``) the benchmarks use; validation seeds
  [FACE_VALID, + 1000) are in the training range but no training face has them.

Distributed training (``torchrun``): ``setup_ddp`` starts the process group from torchrun's environment (gloo on
the CPU, nccl on a GPU); each rank draws its batches from its own shard (``shard``: every world-th image from its
rank), and only rank 0 writes files (``is_main``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

FACE_TRAIN = 40_000
FACE_VALID = 9_990_000
DOMAINS = ("mnist", "face")


def domain_images(domain: str, split: str, n: int = 0) -> np.ndarray:
    """N x S x S x C uint8 (C = 1 for MNIST, 3 for faces); ``n`` > 0 keeps the first n."""
    if domain == "mnist":
        from engine.datasets import load_mnist

        images = load_mnist({"train": "train", "valid": "valid", "test": "test"}[split])[0][..., None]
    elif domain == "face":
        from engine.face.data import EVAL_SEED, procedural_pool

        start, count = {"train": (0, FACE_TRAIN), "valid": (FACE_VALID, 1000), "test": (EVAL_SEED, 1000)}[split]
        count = min(count, n) if n else count
        images = procedural_pool(count, 64, start=start, log=None)[0]
    else:
        raise ValueError(f"unknown domain {domain!r} (expected one of {', '.join(DOMAINS)})")
    return images[:n] if n else images


def to_unit(images: np.ndarray):
    """N x S x S x C uint8 -> torch N x C x S x S float in [-1, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup_ddp(device_type: str) -> Dist:
    """Start the process group when launched by torchrun (WORLD_SIZE > 1): gloo on the CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shard(array, d: Dist):
    """This rank's share of the data: every world-th item, from its rank on."""
    return array[d.rank::d.world] if d.enabled else array


def cleanup_ddp(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def grid_image(rows: list[np.ndarray], scale: int = 2) -> np.ndarray:
    """Rows of N x S x S x C uint8 images -> one picture (grey to RGB), a 2-pixel gap between cells."""
    import cv2

    cols = max(len(r) for r in rows)
    s = rows[0].shape[1]
    out = np.full((len(rows) * (s + 2) + 2, cols * (s + 2) + 2, 3), 40, np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            im = np.repeat(im, 3, 2) if im.shape[2] == 1 else im
            out[2 + i * (s + 2):2 + i * (s + 2) + s, 2 + j * (s + 2):2 + j * (s + 2) + s] = im
    return cv2.resize(out, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def save_png(path, rgb: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def save_checkpoint(run, model, opt, step: int, config: dict, elapsed: float, cpu_s: float = 0.0,
                    name: str = "ckpt") -> None:
    """Model, optimiser and RNG state as safetensors + JSON (no pickle), written atomically (rank 0 only);
    ``elapsed`` wall seconds and ``cpu_s`` CPU seconds of the run so far (summed over resumed sessions)."""
    import json

    import torch
    from safetensors.torch import save_file

    out = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"opt.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    out["rng.cpu"] = torch.get_rng_state()
    tmp = run / f"{name}.safetensors.tmp"
    save_file({k: v.detach().contiguous().cpu() for k, v in out.items()}, str(tmp))
    tmp.replace(run / f"{name}.safetensors")
    meta = {"step": step, "elapsed_s": elapsed, "cpu_s": cpu_s, "config": config,
            "param_groups": opt.state_dict()["param_groups"]}
    (run / f"{name}.json.tmp").write_text(json.dumps(meta, indent=2))
    (run / f"{name}.json.tmp").replace(run / f"{name}.json")


def load_checkpoint(run, model, opt, name: str = "ckpt") -> tuple[int, float, float]:
    """(step, elapsed wall seconds, CPU seconds) of the run's checkpoint, loaded into ``model`` and ``opt``."""
    import json

    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(run / f"{name}.safetensors"))
    meta = json.loads((run / f"{name}.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, key = k.split(".", 2)
            state.setdefault(int(i), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    return int(meta["step"]), float(meta.get("elapsed_s", 0.0)), float(meta.get("cpu_s", 0.0))


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
    for f in dataclasses.fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=default)
        elif isinstance(default, tuple):
            p.add_argument(flag, type=int, nargs="+", default=default)
        else:
            p.add_argument(flag, type=type(default), default=default)
    p.add_argument("--no-resume", action="store_true", help="start fresh even if --out holds a checkpoint")
    a = vars(p.parse_args(argv))
    no_resume = a.pop("no_resume")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in a.items()}), not no_resume
