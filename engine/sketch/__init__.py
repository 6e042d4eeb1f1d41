"""Sketch-guided diffusion with a Latent Guidance Predictor (Voynov et al. 2022, arXiv 2211.13752).

A sketch drawn in the hole steers the fill: at each reverse step a small per-pixel MLP (the LGP) reads the UNet's
activations and predicts the edge map; the step is pushed down the gradient of its distance to the sketch.
Kept cheap to import (no torch): the registry imports this file to read ``MODELS``. The Stable Diffusion models
(``sd-sketch`` and the user's checkpoints) live in ``engine/sd``; they use this family's LGP, guidance and trainer.
"""
from engine.api import Geometry, ModelInfo, Param
from engine.registry import ModelSpec
from engine.weights import MODELS_DIR

# The project's MNIST DDPM (engine/ddpm) and the LGP trained on it (this family).
DDPM_DIR = MODELS_DIR / "ddpm-mnist"
LGP_MNIST_DIR = MODELS_DIR / "sketch-lgp-mnist"

_BETA = Param("beta", "float", 1.0, "Sketch strength (beta)",
              "Guidance step relative to the denoising step (Voynov et al.): 0 = ignore the sketch, 1 = follow it, "
              "higher = follow it more closely at some cost in realism", min=0.0, max=4.0, step=0.1)
_SHARE = Param("share", "float", 0.5, "Guided share of steps",
               "Guide the first (noisiest) share of the reverse steps, where the layout is decided", min=0.0,
               max=1.0, step=0.05)

MODELS = [
    ModelSpec(ModelInfo(
        name="sketch-mnist", title="Sketch-guided digits (DDPM + LGP)", family="sketch",
        description="The project's MNIST DDPM with RePaint inpainting, steered by the strokes you draw in the hole "
                    "through a Latent Guidance Predictor (Voynov et al. 2022). Draw edges (outlines) of a digit.",
        domain="28x28 grey MNIST digits; sketch = outline edges of a digit",
        geometry=Geometry(size=28), grey=True, uses_sketch=True,
        params=(_BETA, _SHARE,
                Param("steps", "int", 100, "Steps", "Reverse diffusion steps (RePaint's strided schedule)", min=2,
                      max=1000, step=5),
                Param("resample", "int", 1, "Resampling (RePaint r)",
                      "Visit each step this many times (RePaint's jumps of length 1), re-noising in between, to "
                      "harmonise the fill with the known pixels", min=1, max=10, step=1)),
        weights=LGP_MNIST_DIR,
        category="digits",
        on_photo="Paints grey digit strokes that follow your sketch: made for 28x28 digits, not for photos."),
        factory="engine.sketch.pipeline:SketchDDPMInpainter", kwargs={"ddpm": DDPM_DIR, "lgp": LGP_MNIST_DIR},
        order=40),
]
