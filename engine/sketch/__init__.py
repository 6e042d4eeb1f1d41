"""Sketch-guided diffusion with a Latent Guidance Predictor (Voynov et al. 2022, arXiv 2211.13752).

Kept cheap to import (no torch): the registry imports this file to read ``MODELS``.
"""
MODELS: list = []
