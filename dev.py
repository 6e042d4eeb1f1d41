"""Set up and run Inpaint Studio with nothing but Python 3.11.

    python3 dev.py editor [IMAGE ...]   create/refresh .venv, then open the editor (bundled sample by default)
    python3 dev.py test [PYTEST ARGS]   create/refresh .venv, then run the whole test suite

The virtual environment lives in .venv; it is (re)installed only when pyproject.toml changes. Uses only the
standard library so it runs before anything is installed.
"""
import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"error: Python 3.11 is required (this is {sys.version.split()[0]}); run dev.py with python3.11")
    stamp = VENV / ".installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and PY.exists():
        return
    t0 = time.perf_counter()
    if not PY.exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev.py: installing dependencies (first run: a few minutes)", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-e", f"{ROOT}[test]"], check=True)
    stamp.write_text(want)
    print(f"dev.py: environment ready in {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("editor", "test"):
        print(__doc__.strip())
        return 2
    ensure_venv()
    if argv[0] == "editor":
        return subprocess.call([str(PY), str(ROOT / "main.py"), *argv[1:]], cwd=ROOT)
    return subprocess.call([str(PY), "-m", "pytest", *argv[1:]], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
