"""Build the desktop bundle and check that the frozen programs work: ``python3 dev.py package``.

    python packaging/build.py [--skip-build] [--out benchmarks/results/package.json]

1. PyInstaller with ``packaging/inpaint_studio.spec`` -> ``dist/InpaintStudio/`` (the editor ``InpaintStudio`` and
   the console program ``inpaint-studio`` share one folder).
2. ``smoke()``: the frozen programs list every model the source registry has, drive the real editor window through
   an edit (``--self-test``: open, paint, fill, accept, export), and fill the bundled sample from the command line
   with one model of every family, loaded the way a user's run loads it (weights from the bundle's resources,
   diffusers / transformers classes by name, a Stable Diffusion folder from disk). Each fill must keep the pixels
   outside the mask and change the hole. tests/test_packaging.py runs the same checks on the source checkout, so
   they cannot rot between builds.
3. A table of the checks (seconds, result) and a JSON report: build time, bundle size, each check.

Exit status 0 only when the build and every check pass.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "inpaint_studio.spec"
DIST = ROOT / "dist" / "InpaintStudio"
SAMPLE = ROOT / "resources" / "samples" / "astronaut.png"
TIMEOUT_S = 600  # per check
HOLE = (200, 190, 290, 260)  # x0, y0, x1, y1 on the 512 x 512 sample: the astronaut's face

# one model of every family, with settings that keep each fill to seconds
FILLS: dict[str, list[str]] = {
    "telea": [],
    "patch": [],
    "repaint-mnist": ["--param", "steps=10", "--param", "resamples=1"],
    "frugal": ["--param", "iterations=15", "--param", "minutes=0.2", "--param", "steps=4"],
    "face-cvae": ["--attr", "smile=1"],
    "sketch-mnist": ["--param", "steps=10"],
    "token-mnist-ar": [],  # int8 rows and a tokenizer beside the transformer: both must travel in the bundle
    "sd-sketch": ["--param", "steps=2", "--prompt", "a face"],  # + checkpoint= a tiny SD folder, made at run time
}


def frozen_command(program: str = "inpaint-studio") -> list[str]:
    """The console program (CLI), or with ``program="InpaintStudio"`` the editor's."""
    return [str(DIST / (program + (".exe" if os.name == "nt" else "")))]


def source_command() -> list[str]:
    return [sys.executable, str(ROOT / "main.py")]


def _inputs(folder: Path) -> tuple[Path, Path, Path]:
    x0, y0, x1, y1 = HOLE
    mask = np.zeros(Image.open(SAMPLE).size[::-1], np.uint8)
    mask[y0:y1, x0:x1] = 255
    sketch = np.zeros_like(mask)
    sketch[(y0 + y1) // 2, x0 + 10:x1 - 10] = 255
    paths = folder / "mask.png", folder / "sketch.png"
    Image.fromarray(mask).save(paths[0])
    Image.fromarray(sketch).save(paths[1])
    return SAMPLE, *paths


class SmokeSetupError(RuntimeError):
    """The source checkout could not prepare a check (its model list, the tiny SD folder)."""


def _source_run(args: list[str], env: dict) -> str:
    """stdout of a source-checkout command; its last error line as a SmokeSetupError when it fails."""
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode:
        said = (proc.stderr or proc.stdout).strip().splitlines() or ["(no output)"]
        raise SmokeSetupError(f"{' '.join(args[:2])} failed: {said[-1]}")
    return proc.stdout


def _models(out: str) -> dict[str, bool]:
    """``models --json`` output -> {name: weights present}: a bundle that lost files from resources/ still lists
    its models, with their weights missing."""
    return {m["name"]: m["weights"] for m in json.loads(out)}


def smoke(command: list[str], models: list[str] | None = None, self_test: bool = True,
          editor: list[str] | None = None, log=print) -> list[dict]:
    """Run the checks with ``command`` (the frozen console program, or python main.py), the editor self-test with
    ``editor`` (default: ``command``); one dict per check."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    checks: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="inpaint-studio-smoke-") as tmp:
        tmp = Path(tmp)
        env["INPAINT_STUDIO_CACHE"] = str(tmp / "cache")

        def run(name: str, args: list[str] | None, ok, program: list[str] = command, problem: str | None = None
                ) -> None:
            t = time.perf_counter()
            try:
                if problem is None:
                    proc = subprocess.run(program + args, capture_output=True, text=True, env=env,
                                          timeout=TIMEOUT_S)
                    said = (proc.stderr or proc.stdout).strip().splitlines() or ["(no output)"]
                    problem = f"exit {proc.returncode}: {said[-1]}" if proc.returncode else ok(proc.stdout)
            except subprocess.TimeoutExpired:
                problem = f"no answer in {TIMEOUT_S} s"
            except Exception as exc:  # a missing program, an unreadable output: this check fails, the others run
                problem = f"{type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - t
            checks.append({"check": name, "seconds": round(seconds, 2), "ok": problem is None,
                           "problem": problem})
            log(f"{'ok  ' if problem is None else 'FAIL'}  {name:24s} {seconds:6.1f} s  {problem or ''}")

        # the source checkout's own listing, from a fresh process (one with test models registered would differ)
        want = _models(_source_run([str(ROOT / "main.py"), "models", "--json"], env))

        def lists_all(out: str):
            listed = _models(out)
            if listed.keys() != want.keys():
                return f"models differ from the source checkout's: {sorted(listed.keys() ^ want.keys())}"
            lost = sorted(n for n, ok in want.items() if ok and not listed[n])
            return f"weights missing: {', '.join(lost)}" if lost else None

        run("models", ["models", "--json"], lists_all)
        if self_test:
            run("editor self-test", ["--self-test"], lambda out: None, editor or command)
        image, mask, sketch = _inputs(tmp)
        before = np.asarray(Image.open(image).convert("RGB"))
        hole = np.asarray(Image.open(mask)) > 127
        for model in list(FILLS) if models is None else models:
            args = ["inpaint", "--model", model, "--image", str(image), "--mask", str(mask),
                    "--out", str(tmp / f"{model}.png"), *FILLS[model]]
            if model == "sketch-mnist":
                args += ["--sketch", str(sketch)]
            setup = None
            if model == "sd-sketch":  # a prompt, no sketch: a sketch needs an LGP learned for that checkpoint
                try:  # tiny SD checkpoints in every layout, loaded as a user's checkpoint would be
                    _source_run(["-m", "engine.sd.tiny", str(tmp / "tiny-sd")], env)
                except SmokeSetupError as exc:
                    setup = str(exc)
                args += ["--param", f"checkpoint={tmp / 'tiny-sd' / 'models' / 'tiny-sd1'}"]

            def kept_outside(out: str, model=model):
                if not (tmp / f"{model}.png").exists():
                    return "exit 0 but no output file"
                after = np.asarray(Image.open(tmp / f"{model}.png").convert("RGB"))
                if after.shape != before.shape:
                    return f"output is {after.shape[1]}x{after.shape[0]}, the input {before.shape[1]}x{before.shape[0]}"
                if not np.array_equal(after[~hole], before[~hole]):
                    return "pixels outside the mask changed"
                return None if not np.array_equal(after[hole], before[hole]) else "the hole was not filled"

            run(f"inpaint {model}", args, kept_outside, problem=setup)
    return checks


def build() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "PyInstaller", str(SPEC), "--noconfirm", "--log-level", "WARN",
                    "--distpath", str(DIST.parent), "--workpath", str(ROOT / "build" / "pyinstaller")],
                   cwd=ROOT, check=True)
    return time.perf_counter() - t


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-build", action="store_true", help="check the bundle already in dist/")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "package.json"))
    args = ap.parse_args(argv)
    build_s = None
    if not args.skip_build:
        if importlib.util.find_spec("PyInstaller") is None:
            print("error: PyInstaller is not installed (python3 dev.py package installs it)", file=sys.stderr)
            return 1
        try:
            build_s = build()
        except subprocess.CalledProcessError as exc:
            print(f"error: PyInstaller failed (exit {exc.returncode}); its messages are above", file=sys.stderr)
            return 1
    if not Path(frozen_command()[0]).exists():
        print(f"error: no bundle at {DIST}", file=sys.stderr)
        return 1
    print(f"\nbundle: {DIST} ({folder_size(DIST) / 2**30:.2f} GiB)"
          + (f", built in {build_s / 60:.1f} min" if build_s else "") + "\n")
    try:
        checks = smoke(frozen_command(), editor=frozen_command("InpaintStudio"))
    except SmokeSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = {"platform": platform.platform(), "python": platform.python_version(), "build_s": build_s,
              "bundle_bytes": folder_size(DIST), "checks": checks}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    failed = [c["check"] for c in checks if not c["ok"]]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed; report: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
