"""Start-up, each in a fresh process: ``python main.py models``, the editor's first window with the sample photo,
and a Telea fill from the command line (all three should stay under 2 s on a 2-core CPU; none imports torch).

Each row is the median of ``--runs`` runs, the rows interleaved so a noisy machine slows them alike. Prints a table
and writes benchmarks/results/startup.json.

    python benchmarks/startup.py [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "samples" / "astronaut.png"

# the editor's first window in a fresh process: what `python main.py` does before the event loop runs
WINDOW = """
import sys, time
t0 = time.perf_counter()
from editor.app import make_app, SAMPLE
app = make_app()
from editor.main_window import MainWindow
w = MainWindow(); w.show(); w.open_path(str(SAMPLE)); app.processEvents()
print(time.perf_counter() - t0, 'torch' in sys.modules, file=sys.stderr)
w.close()
"""
# what a fresh process costs before any of our code runs, reported next to the rows
BARE = "import sys; print(0.0, False, file=sys.stderr)"
PROBE = ("import runpy, sys, time; t0 = time.perf_counter(); sys.argv = {argv!r}; "
         "rc = 0\ntry:\n    runpy.run_path('main.py', run_name='__main__')\nexcept SystemExit as e:\n    rc = e.code\n"
         "print(time.perf_counter() - t0, 'torch' in sys.modules, file=sys.stderr)")


def timed(code: str, env: dict) -> tuple[float, float, bool]:
    """(wall seconds of the whole process, seconds the code measured itself, torch imported)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    wall = time.perf_counter() - t0
    last = (out.stderr.strip().splitlines() or ["nan False"])[-1].split()  # the probe's line comes last
    if out.returncode not in (0, None):
        raise SystemExit(f"failed: {code[:60]}...\n{out.stderr[-2000:]}")
    return wall, float(last[0]), last[1] == "True"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    tmp = Path(tempfile.mkdtemp())
    import numpy as np
    from PIL import Image

    mask = np.zeros((512, 512), np.uint8)
    mask[200:328, 200:328] = 255
    Image.fromarray(mask).save(tmp / "mask.png")
    rows = {
        "python -c pass (interpreter alone)": BARE,
        "python main.py models": PROBE.format(argv=["main.py", "models"]),
        "editor: first window with the sample": WINDOW,
        "python main.py inpaint --model telea (512 px, 128 px hole)": PROBE.format(argv=[
            "main.py", "inpaint", "--model", "telea", "--image", str(SAMPLE), "--mask", str(tmp / "mask.png"),
            "--out", str(tmp / "out.png"), "--overwrite"]),
    }
    seen: dict[str, list[tuple[float, float, bool]]] = {k: [] for k in rows}
    for _ in range(args.runs):
        for name, code in rows.items():
            seen[name].append(timed(code, env))
    results = []
    print(f"{'what':60s} {'process s':>10s} {'inside s':>9s}  torch")
    for name, runs in seen.items():
        wall = statistics.median(r[0] for r in runs)
        inside = statistics.median(r[1] for r in runs)
        torch = any(r[2] for r in runs)
        results.append({"what": name, "process_s": round(wall, 3), "inside_s": round(inside, 3), "torch": torch,
                        "runs": [round(r[0], 3) for r in runs]})
        print(f"{name:60s} {wall:10.2f} {inside:9.2f}  {'yes' if torch else 'no'}")
    out = ROOT / "benchmarks" / "results" / "startup.json"
    out.write_text(json.dumps({"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                               "python": platform.python_version(), "runs": args.runs, "rows": results}, indent=2))
    print(f"-> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
