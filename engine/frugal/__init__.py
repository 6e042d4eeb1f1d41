"""Frugal single-image inpainting (Cherel et al., GRETSI 2023): a 175k-parameter UNet learned on the opened image.

Two models at fixed architecture: ``frugal`` (the paper's diffusion model, sampled with known-pixel replacement)
and ``frugal-regression`` (the same network trained by plain L2 regression on the hole: the paper's blurry
baseline). Both learn on the image first ("Learn this image"), then cache the weights per image.
"""
from engine.api import ModelInfo, Param
from engine.registry import ModelSpec

_LEARN = (
    Param("minutes", "float", 3.0, "Learning time (min)",
          "Wall-clock time spent learning the image before filling; reopening the same image reuses the weights",
          min=0.05, max=120, step=0.5),
    Param("iterations", "int", 0, "Max iterations", "Stop learning after this many iterations (0 = time only)",
          min=0, max=200000, step=100, advanced=True),
    Param("crop", "int", 64, "Crop size (px)", "Side of the random training crops taken from the known region",
          min=16, max=256, step=8, advanced=True),
    Param("batch", "int", 8, "Batch", "Crops per training iteration", min=1, max=64, step=1, advanced=True),
    Param("max_hole", "int", 192, "Max hole (px)",
          "Holes larger than this are learned and filled on a downscaled image, then upscaled", min=32, max=2048,
          step=16, advanced=True),
    Param("folder", "folder", "", "Also learn from folder", "Optional folder of similar images to learn from too"),
    Param("relearn", "bool", False, "Relearn", "Ignore the cached weights for this image and learn again (once)",
          once=True),
)
_SAMPLE = (
    Param("steps", "int", 25, "Sampling steps", "Denoising steps of the reverse diffusion", min=1, max=1000, step=1),
    Param("edm", "bool", False, "EDM preconditioning",
          "Learn with Karras et al.'s skip preconditioning and loss weights: more texture after ~1000 "
          "iterations, residual noise when learning is short", advanced=True),
    Param("auto_guidance", "bool", True, "Automatic guidance",
          "Sample with several autoguidance weights at once and keep the fill whose fine detail matches the pixels "
          "around the hole (about 4x the sampling time)", disables=("guidance",), advanced=True),
    Param("guidance", "float", 1.5, "Autoguidance (w)",
          "Guide the learned net away from its early, blurrier self (Karras et al. 2024): 1 = off (the paper's "
          "sampler), higher = more texture, too high = noise", min=1.0, max=4.0, step=0.25, advanced=True),
    Param("draft_strength", "float", 0.8, "Patch draft strength",
          "Start from the patch method's fill, noised to this level: it lays out the hole (brick rows line up), the "
          "learned net redraws the detail; lower keeps more of the draft. 0 = denoise from pure noise (the paper)",
          min=0.0, max=1.0, step=0.05),
    Param("eta", "float", 1.0, "Stochasticity (eta)", "1 = ancestral DDPM-like steps, 0 = deterministic DDIM",
          min=0.0, max=1.0, step=0.1, advanced=True),
)
_DOMAIN = "the opened image itself (textures, repetitive or self-similar content); learns for a few minutes"

MODELS = [
    ModelSpec(ModelInfo(
        name="frugal", title="Frugal diffusion (learn this image)", family="frugal",
        description="A 175k-parameter UNet (no attention) learned on crops of this image's known region with the "
                    "diffusion objective, then sampled with known-pixel replacement (Cherel et al. 2023) and "
                    "autoguided by its own early snapshot (Karras et al. 2024), starting from a patch-method draft. "
                    "Keeps texture; needs minutes of learning on a CPU, cached per image.",
        domain=_DOMAIN, params=_LEARN + _SAMPLE, learns_on_image=True,
        category="photos", outpaint=True,
        on_photo="Learns this photo for minutes, then fills: good on textures (grass, gravel, brick), slower than "
                 "Patch on a photo."),
        factory="engine.frugal.pipeline:FrugalInpainter", kwargs={"objective": "diffusion"}, order=40),
    ModelSpec(ModelInfo(
        name="frugal-regression", title="Frugal regression (learn this image)", family="frugal",
        description="The same UNet trained by plain L2 regression on the hole: the paper's fixed-architecture "
                    "baseline. Good PSNR, blurry fills.",
        domain=_DOMAIN, params=_LEARN, learns_on_image=True,
        category="photos",
        on_photo="Learns this photo for minutes, then fills with a smooth, blurry average: the paper's baseline."),
        factory="engine.frugal.pipeline:FrugalInpainter", kwargs={"objective": "regression"}, order=41),
]
