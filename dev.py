"""Set up and run Inpaint Studio with nothing but Python 3.11.

    python3 dev.py editor [IMAGE ...]   create/refresh .venv, then open the editor (bundled sample by default)
    python3 dev.py test [PYTEST ARGS]   create/refresh .venv, then run the whole test suite
    python3 dev.py package [--skip-build]  also install PyInstaller, build dist/InpaintStudio/ and smoke-test it

The virtual environment lives in .venv; it is (re)installed only when pyproject.toml changes or an extra is
missing. Uses only the standard library so it runs before anything is installed.
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


def ensure_venv(extras: tuple[str, ...] = ("test",)) -> None:
    """.venv with the project and ``extras`` installed; the stamp holds pyproject.toml's hash and the extras."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"error: Python 3.11 is required (this is {sys.version.split()[0]}); run dev.py with python3.11")
    stamp = VENV / ".installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    had = stamp.read_text().split() if stamp.exists() and PY.exists() else []
    had += ["test"] if len(had) == 1 else []  # a stamp from before extras were recorded
    if had[:1] == [digest] and set(extras) <= set(had[1:]):
        return
    extras = tuple(sorted(set(extras) | (set(had[1:]) if had[:1] == [digest] else set())))
    t0 = time.perf_counter()
    if not PY.exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev.py: installing dependencies (first run: a few minutes)", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-e", f"{ROOT}[{','.join(extras)}]"], check=True)
    stamp.write_text(" ".join((digest, *extras)))
    print(f"dev.py: environment ready in {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("editor", "test", "package"):
        print(__doc__.strip())
        return 2
    if argv[0] == "package":
        ensure_venv(("test", "package"))
        return subprocess.call([str(PY), str(ROOT / "packaging" / "build.py"), *argv[1:]], cwd=ROOT)
    ensure_venv()
    if argv[0] == "editor":
        return subprocess.call([str(PY), str(ROOT / "main.py"), *argv[1:]], cwd=ROOT)
    return subprocess.call([str(PY), "-m", "pytest", *argv[1:]], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
