"""``python main.py serve``: the engine behind an HTTP + WebSocket API on this machine.

    python main.py serve                                    # 127.0.0.1:7860, no token (this computer only)
    python main.py serve --host 0.0.0.0 --token SECRET      # the studio network; clients send the token
    python main.py serve --models-dir /models --port 9000 --max-queue 16 --max-upload-mb 200

Binding anywhere but the loopback address requires a token (or INPAINT_STUDIO_TOKEN). Put it behind a reverse
proxy for TLS (README: "Serve the engine").
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys

TOKEN_ENV = "INPAINT_STUDIO_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py serve", description="Serve the engine's models over HTTP + WebSocket.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this computer only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV, ""),
                   help=f"secret clients must send (default: {TOKEN_ENV}); required off the loopback address")
    p.add_argument("--max-queue", type=int, default=8, help="jobs that may wait; more are answered 'busy'")
    p.add_argument("--max-upload-mb", type=int, default=64, help="largest upload accepted, in MB")
    p.add_argument("--models-dir", help="the user's models folder to offer too")
    p.add_argument("--device", help="where learned models compute: auto, cpu, cuda or cuda:N")
    return p


def loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not loopback(args.host) and not args.token:
        print(f"error: serving on {args.host} needs a token (--token or {TOKEN_ENV}): anyone on the network could "
              "otherwise use this machine's models", file=sys.stderr)
        return 2
    from engine import device, registry
    from engine.api import InpaintError

    try:
        if args.device:
            device.compute_device(args.device)
            device.choose(args.device)
        if args.models_dir:
            for problem in registry.set_models_dir(args.models_dir):
                print(f"warning: {problem}", file=sys.stderr)
    except InpaintError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from engine.server.app import create_app
    from engine.server.jobs import JobQueue

    queue = JobQueue(max_backlog=args.max_queue)
    app = create_app(queue, args.token or None, args.max_upload_mb << 20)
    print(f"Inpaint Studio server on http://{args.host}:{args.port} ({len(registry.all_models())} models"
          f"{', token required' if args.token else ''}); Ctrl+C stops it", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", ws="websockets-sansio")
    finally:
        queue.stop()
    return 0
