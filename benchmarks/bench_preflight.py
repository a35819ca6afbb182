"""Pre-flight image check speed (rscovlm.train.preflight.check_images) on a synthetic mixture-like reference list.

Writes ``--files`` small images (half PNG, half JPEG, 256x256) into a temp folder and references each of them
``--repeats`` times (a mixture references the same image from many records: grounding questions, up-sampled
units). Measured:

* ``naive``  - baseline: one ``PIL.Image.open(path).size`` per reference, in order, one thread (what checking
  each record as it is read would cost);
* ``header`` - ``check_images(refs, "header")``: each distinct file once, on the default thread pool;
* ``header, 1 thread`` - the same on one thread (what deduplication alone gives);
* ``decode`` - ``check_images(refs, "decode")``: every distinct file decoded in full (finds truncated files).

Run: ``python benchmarks/bench_preflight.py [--files 2000 --repeats 10]``. Printed: seconds, references per
second and the ratio to the naive baseline. Target: the header check >= 3x faster than the naive loop at 10
references per file (deduplication; the page cache is warm for every stage, after a first untimed pass). With one
reference per file it costs about what the naive loop costs (~30-80 us per file here); the thread pool pays off on
network file systems, where each open waits for the server, not on a warm local cache.

Measured on this 2-core machine shared with other jobs (load ~4): 20000 references to 2000 files: naive 0.67 s,
header 0.08 s (8.4x), header on one thread 0.17 s (3.9x), decode 1.4 s; 4000 files referenced once: naive
0.10-0.20 s, header 0.19-0.34 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000, help="distinct image files (default: 2000)")
    parser.add_argument("--repeats", type=int, default=10, help="references per file (default: 10)")
    args = parser.parse_args()

    from PIL import Image

    from rscovlm.data.records import ImageRef
    from rscovlm.train.preflight import check_images, default_workers

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(args.files):
            path = Path(tmp, f"img_{i:06d}.{'png' if i % 2 else 'jpg'}")
            Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(path)
            paths.append(str(path))
        refs = [ImageRef(p, f"records.jsonl:{k * len(paths) + i + 1}", (k, i))
                for k in range(args.repeats) for i, p in enumerate(paths)]

        def naive():
            for ref in refs:
                with Image.open(ref.path) as im:
                    im.size

        naive()  # warm the page cache
        rows = []
        t0 = time.perf_counter()
        naive()
        base = time.perf_counter() - t0
        rows.append(("naive (PIL per reference, 1 thread)", base))
        for label, mode, workers in (("header", "header", None), ("header, 1 thread", "header", 1),
                                     ("decode", "decode", None)):
            t0 = time.perf_counter()
            report = check_images(refs, mode, workers=workers)
            rows.append((label, time.perf_counter() - t0))
            assert not report.problems and report.images == len(paths)
        print(f"{len(refs)} references to {len(paths)} files, {default_workers()} threads by default")
        for label, seconds in rows:
            print(f"{label:40s} {seconds:8.3f} s  {len(refs) / seconds:10.0f} refs/s  {base / seconds:6.1f}x")


if __name__ == "__main__":
    main()
