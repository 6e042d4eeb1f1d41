"""Inpaint Studio entry point.

    python main.py [IMAGE ...]     open the editor (on the bundled sample when no image is given)
    python main.py --self-test     open the real window offscreen, fill and export a sample, exit 0 if all worked
    python main.py models          list models           (headless)
    python main.py inpaint ...     fill images from files or folders (headless; see --help)
    python main.py learn ...       learn an image ahead for the models that learn it, cache the weights (headless)
    python main.py serve ...       serve the models over HTTP + WebSocket to editors on other machines (headless)
"""
import os
import sys

# Idle torch worker threads sleep instead of spinning: on a busy desktop (the GUI thread, other programs) spinning
# threads cost up to 10x the CPU per training iteration (measured in docs/frugal.md). Must precede importing torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str]) -> int:
    if argv and argv[0] == "serve":
        from engine.server.cli import main as serve

        return serve(argv[1:])
    from engine.cli import COMMANDS  # the headless commands; anything else opens the editor

    if argv and argv[0] in COMMANDS + ("-h", "--help"):
        from engine.cli import main as cli_main

        return cli_main(argv)
    if argv and argv[0] == "--self-test":
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from editor.selftest import run_self_test

        return run_self_test()
    # torch keeps its default, every core: the GUI stays responsive (benchmarks/responsiveness.py: p99 event-loop
    # lateness 7.5 ms while a job burns both cores) and the frugal Learn needs them (docs/frugal.md)
    from editor.app import run_editor

    return run_editor(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
