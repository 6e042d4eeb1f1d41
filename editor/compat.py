"""Work-around for PySide6 6.12 wheels on Python 3.11: they return None (from every void method, e.g.
``QWidget.update()``) and True (from ``Signal.emit()``) without taking a reference, as if those objects were
immortal (PEP 683, Python >= 3.12). On 3.11 each call steals one reference, and after a few thousand calls
the interpreter aborts with "Fatal Python error: none_dealloc". Giving the three singletons a huge reference
count makes them effectively immortal, which is exactly what the wheel assumes. Harmless elsewhere; a no-op on
3.12+, where they are immortal already.
"""
from __future__ import annotations

import ctypes
import sys

_HEADROOM = 1 << 40  # references; a process would need decades of calls to use them up


def immortalize_singletons() -> None:
    if sys.version_info >= (3, 12):
        return
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _HEADROOM  # ob_refcnt is PyObject's first field
