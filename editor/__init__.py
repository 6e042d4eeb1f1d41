"""Inpaint Studio's PySide6 editor: document model, canvas, panels and the job worker. Imports engine, never torch
on the GUI thread."""
from editor.compat import immortalize_singletons

immortalize_singletons()  # before any Qt call: see editor/compat.py
