"""dev.py's check of the system libraries Qt's X11 plugin needs on a fresh Linux desktop."""
import sys

import pytest

from tests.editor.conftest import ROOT

sys.path.insert(0, str(ROOT))
import dev  # noqa: E402

LDD = """\tlinux-vdso.so.1 (0x00007ffc)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-cursor.so.0 => not found
\tlibweird.so.9 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)
"""


def test_missing_libraries_become_apt_packages():
    missing = dev.missing_libraries(LDD)
    assert missing == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libweird.so.9"]
    advice = dev.qt_advice(missing)
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4" in advice
    assert "libweird.so.9" in advice and "apt-file" in advice
    assert dev.qt_advice([]) == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ldd: Linux")
def test_every_library_qt_loads_here_has_a_package_name():
    """Every library the installed X11 plugin loads (found or not) is in the table, so the advice is complete."""
    import subprocess
    from pathlib import Path

    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    libs = {line.split("=>")[0].strip() for line in out.splitlines() if "=>" in line}
    system = {n for n in libs if n.startswith(("libxcb", "libX", "libxkb", "libEGL", "libGL", "libOpenGL",
                                                "libfontconfig", "libfreetype", "libdbus", "libglib"))}
    assert system - set(dev.QT_LIB_PACKAGES) == set()
    advice = dev.check_qt(Path(sys.executable))
    assert advice == "" or "sudo apt install lib" in advice
