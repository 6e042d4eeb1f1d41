"""Inpaint Studio's PySide6 editor: document model, canvas, panels and the job worker. Imports engine, never torch
on the GUI thread.

Work-around applied on import, before any Qt call: the PySide6 6.12 wheels return None (from every void method,
e.g. ``QWidget.update()``) and True (from ``Signal.emit()``) without taking a reference, as if those objects were
immortal (PEP 683, Python >= 3.12). On Python 3.11 each call steals one reference, and after a few thousand calls
the interpreter aborts with "Fatal Python error: none_dealloc". Giving the three singletons a huge reference
count makes them effectively immortal, which is exactly what the wheel assumes; on 3.12+ it is a no-op.
"""
import ctypes
import sys

_HEADROOM = 1 << 40  # references; a process would need decades of calls to use them up


def _immortalize_singletons() -> None:
    if sys.version_info >= (3, 12):
        return
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _HEADROOM  # ob_refcnt is PyObject's first field


_immortalize_singletons()
