"""Moved to ``engine.sd.tiny`` (every checkpoint type, both layouts); kept so ``python -m engine.sketch.tiny_sd DIR``
and old imports keep working."""
from __future__ import annotations

import sys

from engine.sd.tiny import make_tiny_sd_folder

__all__ = ["make_tiny_sd_folder"]

if __name__ == "__main__":
    print(make_tiny_sd_folder(sys.argv[1] if len(sys.argv) > 1 else "tiny-sd"))
