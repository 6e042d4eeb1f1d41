"""Patch-based non-local inpainting (Wexler et al. 2007, Newson et al. 2014): copies texture from the image itself."""
from engine.api import Geometry, ModelInfo, Param
from engine.registry import ModelSpec

MODELS = [
    ModelSpec(ModelInfo(
        name="patch", title="Patch-based (PatchMatch)", family="patch",
        description="Multi-scale EM over PatchMatch nearest-neighbour fields (Newson et al. 2014): each hole "
                    "pixel is rebuilt from the best-matching known patches. No learning; keeps texture; seconds.",
        domain="any image; best on textures and repeated structure",
        # patches are copied from two hole sizes around the hole (at least 64 px, at most 1024: a 1000 x 800 hole
        # would otherwise take a 5000 x 4000 crop, 2.5 GB in a 24 MP photo): a big photo costs what its hole
        # costs, and the source is what the hole is surrounded by. Full resolution always: the scales where a hole
        # is longer than 512 px get one detail pass each (engine.patch.pipeline.MAX_HOLE)
        geometry=Geometry(context=2.0, min_context=64, max_context=1024),
        params=(
            Param("patch", "int", 7, "Patch size (px)", "Side of the compared patches (odd)", min=3, max=21, step=2),
            Param("levels", "int", 0, "Pyramid levels", "Coarse-to-fine scales (0 = automatic from the hole size)",
                  min=0, max=8, step=1, advanced=True),
            Param("em_iters", "int", 6, "EM iterations", "Search/rebuild rounds per scale", min=1, max=30, step=1,
                  advanced=True),
            Param("pm_iters", "int", 4, "PatchMatch iterations", "Propagation + random search rounds per search",
                  min=1, max=16, step=1, advanced=True),
            Param("texture", "float", 3.0, "Texture weight",  # = PatchConfig.texture (not imported: it pulls cv2)
                  "Weight of gradient texture features in the patch distance (0 = colour only; blurrier)",
                  min=0.0, max=10.0, step=0.5),
        ),
        category="photos", outpaint=True,
        on_photo="Rebuilds the hole from patches of the rest of the photo: keeps texture and grain; may repeat a "
                 "nearby object."),
        factory="engine.patch.pipeline:PatchInpainter", order=30),
]
