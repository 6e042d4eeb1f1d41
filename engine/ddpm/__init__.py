"""DDPM family: RePaint (Lugmayr et al. 2022) over a DDPM (Ho et al. 2020). No torch at import time.

- "repaint-mnist": the shipped MNIST DDPM (resources/models/ddpm-mnist), 28x28 grey digits.
- "repaint-ddpm-folder": any diffusers-format DDPM checkpoint named by the ``checkpoint`` parameter.
"""
from engine.api import Geometry, ModelInfo, Param
from engine.registry import ModelSpec
from engine.weights import MODELS_DIR

MNIST_DIR = MODELS_DIR / "ddpm-mnist"

MCG_DEFAULT = 1.0  # the manifold constraint at the strength measured for each schedule (docs/ddpm.md)

PARAMS = (
    Param("steps", "int", 250, "Steps (t_T)", "Reverse diffusion steps (the schedule is strided to this many)",
          min=10, max=1000, step=10),
    Param("jump_length", "int", 10, "Jump length", "How many steps each resampling jump goes back (j)",
          min=1, max=50, step=1),
    Param("resamples", "int", 10, "Resamples", "How often each jump is repeated (r); 1 = no resampling",
          min=1, max=20, step=1),
    Param("fast", "bool", False, "Fast mode",
          "20 strided steps, resampling on the band t = 200-400 (j=4, r=5) with a 4x manifold-constraint step: 36 "
          "instead of 2,410 UNet calls; ignores the three above", disables=("steps", "jump_length", "resamples")),
    Param("mcg", "float", MCG_DEFAULT, "Manifold constraint",
          "Strength of the gradient step that makes the fill agree with the known pixels (MCG, Chung et al. 2022): "
          "1 = the step measured best for the schedule, 0 = plain RePaint. Each step then also runs the network "
          "backwards (about 2x the time)", min=0.0, max=5.0, step=0.1),
)

MODELS = [
    ModelSpec(ModelInfo(
        name="repaint-mnist", title="RePaint (MNIST)", family="ddpm",
        description="RePaint over a small DDPM trained on MNIST: the hole is denoised step by step while the known "
                    "pixels are re-noised and pasted in at every step. Works on a 28x28 grey crop around the hole.",
        domain="28x28 grey MNIST digits, white on black (other images are filled with digit-like strokes)",
        geometry=Geometry(size=28), params=PARAMS, weights=MNIST_DIR, grey=True,
        category="digits", batch=32,
        on_photo="Paints grey handwritten-digit strokes: made for 28x28 digits, not for photos."),
        factory="engine.ddpm.pipeline:RePaintInpainter", kwargs={"checkpoint": str(MNIST_DIR)}, order=30),
    ModelSpec(ModelInfo(
        name="repaint-ddpm-folder", title="RePaint (your DDPM checkpoint)", family="ddpm",
        description="RePaint over any diffusers-format DDPM (a folder with config.json + safetensors, a pipeline "
                    "folder with unet/ and scheduler/). Works on a crop at the UNet's size.",
        domain="whatever the checkpoint was trained on (its UNet's sample_size, 1 or 3 channels)",
        params=(Param("checkpoint", "folder", "", "Checkpoint",
                      "DDPM checkpoint folder (diffusers layout, safetensors)", remember=True),) + PARAMS,
        weights=None,
        category="yours", batch=4,  # a user's checkpoint may be 256 px and RGB: small batches
        on_photo="Fills with what your DDPM checkpoint was trained on, at its own small size."),
        factory="engine.ddpm.pipeline:RePaintInpainter", order=31),
]
