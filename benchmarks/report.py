"""What every benchmark's JSON ends with: the machine it ran on and the command that made it."""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path


def write_report(path: str | Path, report: dict, script: str, argv: list[str] | None) -> None:
    """Add ``machine`` (CPUs, platform, 1-minute load: these machines are shared) and ``command`` to ``report``,
    write it as JSON to ``path`` and say so."""
    report["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                         "load_average_1m": os.getloadavg()[0]}
    report["command"] = f"python benchmarks/{Path(script).name} " + " ".join(sys.argv[1:] if argv is None else argv)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
