"""``python -m provenance FILE...``: print each file's provenance evidence as JSON Lines."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from provenance import inspect


def main(argv: list[str] | None = None) -> int:
    paths = [Path(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    if not paths or any(arg in ("-h", "--help") for arg in map(str, paths)):
        print("usage: python -m provenance FILE... (settings: DETECTOR_PROVENANCE_* variables)", file=sys.stderr)
        return 2
    for path in paths:
        started = time.perf_counter()
        evidence = inspect(path.read_bytes()) if path.is_file() else []
        elapsed = round(1000 * (time.perf_counter() - started), 1)
        record = {"path": str(path), "evidence": [item.to_dict() for item in evidence], "time_ms": elapsed}
        print(json.dumps(record, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
