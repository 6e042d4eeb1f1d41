"""``python -m tests.editor.fake_server --port P --token T``: ``main.py serve`` with the test models registered too
(a slow one with previews, for cancelling a remote job from the editor)."""
import sys

from engine.server.cli import main
from tests.fake_models import register_fake_models

if __name__ == "__main__":
    register_fake_models()
    sys.exit(main(sys.argv[1:]))
