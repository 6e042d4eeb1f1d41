"""Classical (non-learned) fills: OpenCV's Telea fast marching and Navier-Stokes inpainting."""
from engine.api import ModelInfo, Param
from engine.registry import ModelSpec

_RADIUS = Param("radius", "int", 5, "Radius", "Neighbourhood radius in pixels considered around each hole pixel",
                min=1, max=50, step=1)

MODELS = [
    ModelSpec(ModelInfo(
        name="telea", title="Telea (OpenCV)", family="classical",
        description="Fast marching method (Telea 2004): propagates colours inward from the hole's border, "
                    "weighted by distance and direction. Instant; smooth, no texture.",
        domain="any image; best for thin scratches and small holes",
        params=(_RADIUS,), instant=True,
        category="photos",
        on_photo="Smears the colours around the hole into it: fine for scratches, dust and thin wires, a blur on "
                 "anything wider."),
        factory="engine.classical.pipeline:OpenCVInpainter", kwargs={"method": "telea"}, order=10),
    ModelSpec(ModelInfo(
        name="navier-stokes", title="Navier-Stokes (OpenCV)", family="classical",
        description="Fluid-dynamics inpainting (Bertalmio et al. 2001): continues isophotes (lines of equal "
                    "brightness) into the hole. Instant; smooth, no texture.",
        domain="any image; best for thin scratches and small holes",
        params=(_RADIUS,), instant=True,
        category="photos",
        on_photo="Continues the edges around the hole into it: fine for scratches and thin wires, a blur on "
                 "anything wider."),
        factory="engine.classical.pipeline:OpenCVInpainter", kwargs={"method": "ns"}, order=11),
]
