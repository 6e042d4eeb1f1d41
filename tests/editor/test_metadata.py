"""engine.metadata: the one PNG text builder the CLI and the editor share (no Qt needed)."""
import json

import numpy as np

from engine.api import Result
from engine.metadata import png_metadata


def result(**kw) -> Result:
    base = dict(image=np.zeros((4, 4, 3), np.uint8), model="m", seed=3, params={"steps": 2, "fast": True,
                "sampler": "ddim", "eta": 0.5}, attributes={}, timings={"total": 0.1})
    base.update(kw)
    return Result(**base)


def test_params_round_trip_as_json_with_their_types():
    meta = png_metadata(result(), "photo.png")
    assert meta == {"Software": "Inpaint Studio", "model": "m", "seed": "3", "source": "photo.png",
                    "params": json.dumps({"eta": 0.5, "fast": True, "sampler": "ddim", "steps": 2})}
    assert json.loads(meta["params"]) == {"steps": 2, "fast": True, "sampler": "ddim", "eta": 0.5}
    assert all(isinstance(v, str) for v in meta.values()), "PNG text chunks are strings"


def test_optional_keys_only_when_there_is_something_to_say():
    meta = png_metadata(result(attributes={"smile": 1.0}, chosen={"guidance": 2.5}, prompt="a red balloon"))
    assert json.loads(meta["attributes"]) == {"smile": 1.0} and json.loads(meta["chosen"]) == {"guidance": 2.5}
    assert meta["prompt"] == "a red balloon" and "source" not in meta
    assert png_metadata(None, "photo.png") == {"Software": "Inpaint Studio", "source": "photo.png"}
