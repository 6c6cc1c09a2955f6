"""Random reads of an image's bytes: files in a folder against the same images in LitData shards.

    python3 benchmarks/shard_reads.py /tmp/shardbench/60000/folder /tmp/shardbench/60000/shards

(the folders `shard_loader.py` writes). 3,000 locators of each source in a seeded random order, read once
each with imagefit's `read_bytes` in one process after one warm-up read; reads/s printed per source.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from imagefit.data.decode import read_bytes
from imagefit.data.sources import find_samples

READS = 3000


def main() -> None:
    for source in sys.argv[1:]:
        samples = find_samples(Path(source)).samples
        chosen = random.Random(0).sample(range(len(samples)), min(READS, len(samples)))
        read_bytes(samples[chosen[0]].path)
        started = time.perf_counter()
        for index in chosen:
            read_bytes(samples[index].path)
        print(f"{source}: {len(chosen) / (time.perf_counter() - started):.0f} reads/s", flush=True)


if __name__ == "__main__":
    main()
