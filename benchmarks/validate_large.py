"""Validate a ~100 MB JSONL file and print throughput and peak memory.

    python benchmarks/validate_large.py [--mb 100]

The issue asks that a 100 MB file validate in bounded memory. This writes such a file
(records of ~400 bytes, every 1,000th one broken so the error path is exercised too),
validates it in a child process and prints MB/s and the child's peak RSS next to the
file size: the ratio shows memory does not follow the file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import sys, time, resource
from tunesmith.datasets import validate_dataset
start = time.perf_counter()
report = validate_dataset(sys.argv[1])
elapsed = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(report.records, report.log.error_count, report.log.warning_count, elapsed, peak_kb)
"""

BASELINE = "import tunesmith.datasets, resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def write_file(path: Path, megabytes: int) -> int:
    filler = "The quick brown fox jumps over the lazy dog. " * 4
    records = 0
    with path.open("w") as out:
        while out.tell() < megabytes * 1_000_000:
            if records % 1000 == 999:
                out.write('{"messages": [broken\n')
            else:
                record = {
                    "messages": [
                        {"role": "user", "content": [{"text": f"Question {records}: {filler}"}]},
                        {"role": "assistant", "content": [{"text": f"Answer {records}: {filler}"}]},
                    ]
                }
                out.write(json.dumps(record) + "\n")
            records += 1
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="file size in MB (default 100)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.jsonl"
        lines = write_file(path, args.mb)
        size_mb = path.stat().st_size / 1e6
        base_kb = int(subprocess.check_output([sys.executable, "-c", BASELINE]))
        out = subprocess.check_output([sys.executable, "-c", CHILD, str(path)], text=True).split()
        records, errors, warnings, elapsed, peak_kb = int(out[0]), int(out[1]), int(out[2]), float(out[3]), int(out[4])
    print(f"file: {size_mb:.1f} MB, {lines:,} lines")
    print(f"validated: {records:,} valid records, {errors:,} errors, {warnings:,} warnings")
    print(f"time: {elapsed:.1f} s ({size_mb / elapsed:.1f} MB/s)")
    print(f"peak RSS: {peak_kb / 1024:.0f} MB (interpreter + imports alone: {base_kb / 1024:.0f} MB)")
    print(f"peak RSS above baseline / file size: {(peak_kb - base_kb) / 1024 / size_mb:.2f}")


if __name__ == "__main__":
    main()
