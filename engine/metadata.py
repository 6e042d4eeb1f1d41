"""The text written into exported PNGs: one builder for the CLI and the editor, so a file says the same whichever
made it. Values are strings (PNG tEXt); the structured ones are JSON, so ``json.loads`` gives the job's settings
back with their types (``--param`` accepts them as they are). Qt-free and torch-free."""
from __future__ import annotations

import json

from engine.api import Result

SOFTWARE = "Inpaint Studio"


def _json(value: dict) -> str:
    return json.dumps(value, sort_keys=True, default=str)  # default: a Path or numpy scalar a model put there


def png_metadata(result: Result | None, source: str | None = None) -> dict[str, str]:
    """Software, model, seed, params (JSON) of ``result``; attributes, chosen (JSON) and prompt when there are
    any; source (the input file's name) when known. ``result`` None (nothing filled yet): Software and source."""
    meta = {"Software": SOFTWARE}
    if result is not None:
        meta.update(model=result.model, seed=str(result.seed), params=_json(result.params))
        if result.attributes:
            meta["attributes"] = _json(result.attributes)
        if result.chosen:
            meta["chosen"] = _json(result.chosen)
        if result.prompt:
            meta["prompt"] = result.prompt
    if source:
        meta["source"] = source
    return meta
