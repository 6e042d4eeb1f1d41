"""Face inpainting with smile and glasses toggles: a conditional VAE fine-tuned adversarially (seed 003).

Cheap to import (no torch): the registry reads ``MODELS``; the pipeline and the detector load on first use.
"""
from pathlib import Path

from engine.api import Attribute, Geometry, ModelInfo, Param
from engine.registry import ModelSpec

WEIGHTS = Path(__file__).resolve().parents[2] / "resources" / "models" / "face-cvae"

MODELS = [
    ModelSpec(ModelInfo(
        name="face-cvae", title="Face cVAE (smile / glasses)", family="face",
        description="Conditional VAE with adversarial fine-tuning (seed 003): fills a hole in a face crop in one "
                    "pass and lets you ask for a smile and for glasses. Place the face box over the face "
                    "(detected automatically) and mask the mouth or the eye band; toggles refill at once.",
        domain="64x64 frontal portraits; trained on procedural cartoon portraits (no labelled face set is "
               "available offline), so on real photos it draws cartoon-like mouths and glasses",
        geometry=Geometry(size=64, context=1.0),  # without a face box: the hole plus one hole size around
        params=(Param("variation_scale", "float", 1.0, "Variation",
                      "Temperature of the latent sample z = mu + sigma * (t * eps); 0 = the most likely fill, "
                      "change the seed for another sample", min=0.0, max=3.0, step=0.1),
                Param("attribute_strength", "float", 0.5, "Attribute strength",
                      "Guidance that exaggerates what the smile/glasses toggles change (0 = plain decoder); "
                      "large values add artefacts", min=0.0, max=3.0, step=0.25)),
        attributes=(Attribute("smile", "Smile", 1.0, "Fill the mouth smiling (1) or neutral (0)"),
                    Attribute("glasses", "Glasses", 0.0, "Fill the eye band with glasses (1) or without (0)")),
        weights=WEIGHTS, instant=True, uses_region=True,
        category="faces",
        on_photo="Draws a cartoon-like mouth or glasses in the face box: trained on drawn portraits, not real faces."),
        factory="engine.face.pipeline:FaceInpainter", order=60,
        region_detector="engine.face.detect:detect_face"),
]
