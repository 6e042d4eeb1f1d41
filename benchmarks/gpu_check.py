"""The prepared GPU check (issue 25): what must work on a CUDA GPU, in one script of a few minutes.

    python benchmarks/gpu_check.py                 # on a machine with a CUDA GPU
    python benchmarks/gpu_check.py --device cpu    # the same checks on the CPU (a dry run of the script itself)

1. the device tests (``tests/test_device.py``, three of which skip without a GPU) under pytest;
2. an fp16 Stable Diffusion fill on tiny random components (``engine.sd.tiny``: SD 1.x as a single file and SDXL
   inpainting as a diffusers folder): the precision used, one preview per step, pixels outside the mask unchanged,
   the same fill again from the same seed, seconds;
3. the frugal and RePaint rows of the time table (``benchmarks/time_to_result.py --models ...``) on the device;
4. what it ran on: torch, CUDA, the GPU's name and memory, peak GPU memory.

Writes benchmarks/results/gpu_check.json (``--out``) and prints a summary; exit code 1 when a check failed.

The GPU machines' image (Python 3.12, its own torch 2.11, transformers, onnxruntime, OpenCV, scikit-image, pytest)
lacks diffusers and its importlib_metadata (with lazy-importer); nothing here needs PySide6. ``--bundle DIR``
downloads those as Python 3.12 wheels, at the versions this checkout's .venv runs, into DIR (6 MB; ``.whl`` is
git-ignored, so it travels only when carried). The device call, as one command::

    python benchmarks/gpu_check.py --bundle .whl                              # here, once
    # device run, carry [".whl"], timeout_s 540:
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site && PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT/gpu_check.json

then copy the JSON that comes back to benchmarks/results/gpu_check.json and commit it.

Rehearsed here in an image like the GPU one (a Python 3.12 venv with torch 2.11.0+cu130 on the CPU, transformers
5.17, huggingface_hub 1.33, the bundle installed exactly as above, ``--device cpu``): every check passed, 8 min 12 s
on a 2-core CPU, 7.8 of them in the frugal and RePaint time rows. Expect about 7 minutes on a GPU too: frugal's
two rows learn for its default 3 minutes each, a wall-clock budget that a GPU fills with more iterations, not less
time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "gpu_check.json"


def machine(device: str) -> dict:
    import torch

    facts = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": device,
             "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        facts.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2 ** 30, 1))
    return facts


def device_tests(env: dict) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_device.py"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    tail = out.stdout.strip().splitlines()[-1:] or ["(no output)"]
    return {"ok": out.returncode == 0, "summary": tail[0], "seconds": round(time.perf_counter() - t0, 1),
            "output_tail": (out.stdout + out.stderr)[-3000:] if out.returncode else ""}


def sd_fills(device: str) -> dict:
    """Tiny SD checkpoints through the registry and the runner, as the editor and the CLI run them."""
    import numpy as np
    import torch

    from engine import registry
    from engine.api import Request, drive
    from engine.runner import run_job
    from engine.sd import tiny

    root = Path(tempfile.mkdtemp())
    for arch, inpainting, layout in (("sd1", False, "file"), ("sdxl", True, "folder")):
        parts = tiny.tiny_parts(arch, inpainting)
        name = arch + ("-inpainting" if inpainting else "")
        if layout == "file":
            tiny.write_single_file(parts, root / "models" / f"{name}.safetensors")
        else:
            tiny.write_folder(parts, root / "models" / f"{name}-folder")
        tiny.write_configs(parts, root / "configs")
    os.environ["INPAINT_STUDIO_SD_CONFIGS"] = str(root / "configs")
    problems = registry.set_models_dir(root / "models")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    mask = np.zeros((96, 128), bool)
    mask[30:70, 40:90] = True
    rows = []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for name in ("sd1.safetensors", "sdxl-inpainting-folder"):
        row: dict = {"model": name}
        try:
            inpainter = registry.load(name)
            previews: list = []
            t0 = time.perf_counter()
            req = Request(img, mask, params={"steps": 4}, prompt="a test", seed=3)
            res = drive(run_job(inpainter, req), previews.append)
            row["seconds"] = round(time.perf_counter() - t0, 2)
            again = drive(run_job(inpainter, Request(img, mask, params={"steps": 4}, prompt="a test", seed=3)))
            row.update(previews=len(previews), outside_unchanged=bool(np.array_equal(res.image[~mask], img[~mask])),
                       same_seed_same_fill=bool(np.array_equal(res.image, again.image)),
                       stats={k: v for k, v in res.stats.items() if isinstance(v, (str, int, float, bool))})
            half = device == "cpu" or row["stats"].get("precision") == "fp16"  # a CUDA fill runs in half precision
            row["ok"] = row["outside_unchanged"] and row["previews"] >= 4 and half
        except Exception as exc:  # a failure is a row of the report, not the end of the check
            row.update(ok=False, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-2000:])
        rows.append(row)
    registry.set_models_dir(None)
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else None
    return {"ok": all(r["ok"] for r in rows), "rows": rows, "scan_problems": problems,
            "peak_gpu_mib": None if peak is None else round(peak, 1)}


def time_rows(env: dict, models: str) -> dict:
    out_json = Path(tempfile.mkdtemp()) / "time_to_result.json"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "benchmarks/time_to_result.py", "--models", models, "--out", str(out_json)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    rows = json.loads(out_json.read_text()).get("rows", []) if out_json.exists() else []
    return {"ok": out.returncode == 0, "seconds": round(time.perf_counter() - t0, 1), "rows": rows,
            "table": out.stdout[-4000:], "error": out.stderr[-3000:] if out.returncode else ""}


# what the GPU image lacks of what the checked code imports (importlib_metadata >= 9 needs lazy-importer)
BUNDLED = ("diffusers", "importlib_metadata", "lazy-importer")


def bundle(folder: str) -> int:
    """Download BUNDLED as Python 3.12 wheels (pure Python: any manylinux tag fits) at this environment's versions."""
    from importlib.metadata import version

    pins = [f"{name}=={version(name)}" for name in BUNDLED]
    for stale in Path(folder).glob("*.whl"):  # two versions of one package would stop the whole install there
        stale.unlink()
    out = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                          "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                          "-d", folder, *pins], capture_output=True, text=True)
    if out.returncode:
        why = (out.stderr.strip().splitlines() or ["no reason given"])[-1]
        print(f"error: pip could not download {' '.join(pins)}: {why}", file=sys.stderr)
        return 2
    wheels = sorted(Path(folder).glob("*.whl"))
    print("\n".join(f"{w.name}  {w.stat().st_size / 2 ** 20:.1f} MiB" for w in wheels))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    ap.add_argument("--models", default="frugal,repaint-mnist", help="time-table rows to run on the device")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--bundle", metavar="DIR", help="only download the wheels the GPU image lacks into DIR")
    args = ap.parse_args()
    if args.bundle:
        return bundle(args.bundle)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA GPU here (run with --device cpu for a dry run)", file=sys.stderr)
        return 2
    os.environ["INPAINT_STUDIO_DEVICE"] = args.device
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    report = {"machine": machine(args.device)}
    for name, check in (("device_tests", lambda: device_tests(env)), ("sd_fp16_fills", lambda: sd_fills(args.device)),
                        ("time_to_result", lambda: time_rows(env, args.models))):
        t0 = time.perf_counter()
        try:
            report[name] = check()
        except Exception as exc:
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        print(f"{name:16s} {'ok' if report[name]['ok'] else 'FAILED':7s} {time.perf_counter() - t0:7.1f} s",
              flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(f"-> {args.out}")
    return 0 if all(v.get("ok") for k, v in report.items() if k != "machine") else 1


if __name__ == "__main__":
    sys.exit(main())
