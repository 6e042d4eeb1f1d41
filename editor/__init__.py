"""Inpaint Studio's PySide6 editor: document model, canvas, panels and the job worker. Imports engine, never torch
on the GUI thread."""
