"""``test-fresh``: test-train (tests/fake_models.py) with a ``Param.once`` switch, ``fresh``: forget what was
learned of this image and learn it again (the shape of a "relearn" option, which should apply to one job only)."""
from __future__ import annotations

from engine import registry
from engine.api import CancelToken, JobGen, ModelInfo, Param, Request
from engine.registry import ModelSpec
from tests.fake_models import SLOW_PARAMS, SlowInpainter

NAME = "test-fresh"
FRESH = Param("fresh", "bool", False, "Learn afresh", "Forget what was learned of this image", once=True)


class FreshInpainter(SlowInpainter):
    def _forget(self, request: Request) -> None:
        if request.params.get("fresh"):
            SlowInpainter.learned.discard(request.image.tobytes())

    def learn_image(self, request: Request, cancel: CancelToken) -> JobGen:
        self._forget(request)
        return (yield from super().learn_image(request, cancel))

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        self._forget(request)
        return (yield from super().run(request, cancel))


def register() -> None:
    info = ModelInfo(name=NAME, title="Test: fresh", family="test", description="test-train with a once switch",
                     domain="tests only", params=SLOW_PARAMS + (FRESH,), learns_on_image=True)
    registry.register(ModelSpec(info, f"{__name__}:FreshInpainter", order=907))


def unregister() -> None:
    registry.unregister(NAME)
