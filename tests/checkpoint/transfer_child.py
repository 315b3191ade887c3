"""Runs one transfer in its own process (the kill -9 test): SRC DST BANDWIDTH CHUNK_BYTES."""

from __future__ import annotations

import json
import sys

from caftm.checkpoint import transfer_latest

if __name__ == "__main__":
    src, dst, bandwidth, chunk = sys.argv[1:5]
    print("started", flush=True)
    result = transfer_latest(
        src, dst, bandwidth_bytes_per_s=float(bandwidth), chunk_bytes=int(chunk)
    )
    print(json.dumps(None if result is None else result.bytes), flush=True)
