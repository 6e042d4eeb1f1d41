"""Set up and run Inpaint Studio with nothing but Python 3.11.

    python3 dev.py editor [IMAGE ...]   create/refresh .venv, then open the editor (bundled sample by default)
    python3 dev.py test [PYTEST ARGS]   create/refresh .venv, then run the whole test suite
    python3 dev.py package [--skip-build]  also install PyInstaller, build dist/InpaintStudio/ and smoke-test it
    python3 dev.py check-qt             (Linux) list the system libraries Qt's X11 plugin lacks, as apt packages

On Linux, ``dev.py editor`` runs the same check first: a fresh desktop install often lacks libxcb-cursor0 and a
few other X11 libraries that Qt loads at start, and Qt's own message about it is hard to read.

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


# The shared libraries Qt's X11 platform plugin (PySide6/Qt/plugins/platforms/libqxcb.so) loads, and the Debian /
# Ubuntu packages that ship them (Fedora: dnf install xcb-util-cursor xcb-util-wm xcb-util-keysyms ...; Ubuntu 24.04
# renames a few with a t64 suffix, e.g. libglib2.0-0t64).
QT_LIB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0", "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-sync.so.1": "libxcb-sync1", "libxcb-shm.so.0": "libxcb-shm0", "libxcb-render.so.0": "libxcb-render0",
    "libxcb-util.so.1": "libxcb-util1", "libxcb.so.1": "libxcb1", "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libxkbcommon.so.0": "libxkbcommon0",
    "libXau.so.6": "libxau6", "libXdmcp.so.6": "libxdmcp6", "libGLdispatch.so.0": "libglvnd0",
    "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libGLX.so.0": "libglx0", "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1", "libfreetype.so.6": "libfreetype6", "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0",
}


def missing_libraries(ldd_output: str) -> list[str]:
    """The library names ``ldd`` reports as "not found", once each, in order."""
    found = []
    for line in ldd_output.splitlines():
        if "=> not found" in line:
            name = line.split("=>")[0].strip()
            if name not in found:
                found.append(name)
    return found


def qt_advice(missing: list[str]) -> str:
    """What to install, in words ("" when nothing is missing)."""
    if not missing:
        return ""
    packages = sorted({QT_LIB_PACKAGES[m] for m in missing if m in QT_LIB_PACKAGES})
    unknown = [m for m in missing if m not in QT_LIB_PACKAGES]
    lines = [f"Qt cannot open a window here: {', '.join(missing)} missing."]
    if packages:
        lines.append(f"  Debian/Ubuntu: sudo apt install {' '.join(packages)}")
    if unknown:
        lines.append(f"  also install the packages that provide {', '.join(unknown)} (apt-file search NAME)")
    return "\n".join(lines)


def check_qt(python: Path = PY) -> str:
    """On Linux: ldd on PySide6's X11 plugin; the advice for what it lacks ("" when all is there, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return ""
    try:
        folder = subprocess.run([str(python), "-c", "import PySide6, os; print(os.path.dirname(PySide6.__file__))"],
                                capture_output=True, text=True, check=True).stdout.strip()
        plugin = Path(folder) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""  # no ldd or no PySide6 yet: Qt reports for itself
    return qt_advice(missing_libraries(out))


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("editor", "test", "package", "check-qt"):
        print(__doc__.strip())
        return 2
    if argv[0] == "package":
        ensure_venv(("test", "package"))
        return subprocess.call([str(PY), str(ROOT / "packaging" / "build.py"), *argv[1:]], cwd=ROOT)
    ensure_venv()
    if argv[0] == "check-qt":
        advice = check_qt()
        print(advice or "dev.py: Qt finds every system library it needs")
        return 1 if advice else 0
    if argv[0] == "editor":
        platform = os.environ.get("QT_QPA_PLATFORM", "xcb")
        advice = check_qt() if platform.startswith("xcb") else ""
        if advice and not os.environ.get("WAYLAND_DISPLAY"):  # X11 is what Qt uses without Wayland
            print(advice, file=sys.stderr)
            return 1
        if advice:
            print(advice + "\n  (trying Wayland)", file=sys.stderr)
        return subprocess.call([str(PY), str(ROOT / "main.py"), *argv[1:]], cwd=ROOT)
    return subprocess.call([str(PY), "-m", "pytest", *argv[1:]], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
