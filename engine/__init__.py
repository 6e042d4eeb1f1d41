"""Inpaint Studio engine: models, samplers, training, data and metrics. Pure Python + torch; never imports Qt."""
