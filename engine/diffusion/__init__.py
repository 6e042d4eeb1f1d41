"""The diffusion core every family builds on: one noise schedule (``schedule``), one reverse loop with inpainting,
RePaint's jumps, the manifold constraint and a guidance hook (``samplers``), and RePaint's settings (``repaint``)."""
