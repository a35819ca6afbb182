"""Benchmark: convert a generated GeoChat-style file (default 100k records) to unified conversation records.

Prints records/s and peak memory (max RSS of a fresh child process) of

* ``rscovlm``  - ``rscovlm.data.converters.convert("geochat", ...)`` (descriptor removal, 0-100 box parsing to
                 original-pixel hbb/obb, cleaning, per-record validation, JSONL + report), and
* ``floor``    - the I/O floor every converter pays: ``json.load`` of the array + ``json.dumps`` of each record
                 to JSONL, no conversion at all,

side by side, so the ratio says what the conversion itself costs on top of reading and writing the data.

    PYTHONPATH=. python benchmarks/bench_convert.py [--records 100000] [--images 500] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

QUESTIONS = ["What is the main land use in the image ?", "How many storagetank are visible??",
             "Is there a  harbor in the image?", "Describe the image in detail.", "What color is the roof?"]
ANSWERS = ["Residential area..", "There are  three storage tanks !!", "Yes , there is a harbor.",
           "The image shows a buliding next to teh road.", "It is red."]


def geochat_box(rng: np.random.Generator) -> str:
    x1, y1 = rng.integers(0, 80, 2)
    x2, y2 = x1 + rng.integers(1, 20), y1 + rng.integers(1, 20)
    if rng.random() < 0.5:
        return f"{{<{x1}><{y1}><{x2}><{y2}>|<{int(rng.integers(-90, 90))}>}}"
    return f"{{<{x1}><{y1}><{x2}><{y2}>}}"


def make_record(i: int, rng: np.random.Generator, n_images: int) -> dict:
    image = f"img_{i % n_images:05d}.png"
    kind = i % 4
    if kind == 0:
        conv = [{"from": "human", "value": "<image>\n[refer] Give me the location of <p>the white car</p>"},
                {"from": "gpt", "value": "<p>the white car</p> " + "".join(geochat_box(rng) for _ in range(
                    int(rng.integers(1, 4))))}]
    elif kind == 1:
        conv = [{"from": "human", "value": f"[identify] What is the object present at {geochat_box(rng)}"},
                {"from": "gpt", "value": "It is a storagetank ."}]
    elif kind == 2:
        conv = [{"from": "human", "value": "<image>\n[grounding] Describe the image in detail."},
                {"from": "gpt", "value": f"There are <p>2 ships</p> {geochat_box(rng)}{geochat_box(rng)} near "
                                         f"<p>a harbor</p> {geochat_box(rng)}."}]
    else:
        turns = int(rng.integers(1, 4))
        conv = []
        for t in range(turns):
            q = QUESTIONS[int(rng.integers(len(QUESTIONS)))]
            conv += [{"from": "human", "value": ("<image>\n" if t == 0 else "") + q},
                     {"from": "gpt", "value": ANSWERS[int(rng.integers(len(ANSWERS)))]}]
    return {"id": str(i), "image": image, "conversations": conv}


def generate(workdir: Path, n_records: int, n_images: int) -> tuple[Path, Path]:
    from PIL import Image

    images = workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sizes = [(800, 800), (600, 600), (1024, 768), (512, 512)]
    for i in range(n_images):
        path = images / f"img_{i:05d}.png"
        if not path.exists():
            Image.new("L", sizes[i % len(sizes)]).save(path)
    src = workdir / f"geochat_{n_records}.json"
    if not src.exists():
        with open(src, "w", encoding="utf-8") as fh:
            json.dump([make_record(i, rng, n_images) for i in range(n_records)], fh, indent=1)
    return src, images


CHILD_RSCOVLM = """
import resource, sys, time
from rscovlm.data.converters import ConvertConfig, convert
t = time.perf_counter()
rep = convert("geochat", ConvertConfig(input=sys.argv[1], output=sys.argv[2], images=sys.argv[3]))
dt = time.perf_counter() - t
print(dt, rep.records_out, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

CHILD_FLOOR = """
import json, resource, sys, time
t = time.perf_counter()
with open(sys.argv[1], encoding="utf-8") as fh:
    recs = json.load(fh)
with open(sys.argv[2], "w", encoding="utf-8") as out:
    for r in recs:
        out.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")))
        out.write("\\n")
dt = time.perf_counter() - t
print(dt, len(recs), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_child(code: str, *args: str) -> tuple[float, int, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, env=env)
    dt, n, rss_kb = out.stdout.split()
    return float(dt), int(n), int(rss_kb) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--workdir", default=None, help="keep generated data here (default: a temporary folder)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool (best time is reported)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        t = time.perf_counter()
        src, images = generate(work, args.records, args.images)
        print(f"input: {src} ({src.stat().st_size / 2**20:.1f} MiB, {args.records} records, {args.images} images; "
              f"generated in {time.perf_counter() - t:.1f} s)")
        rows = []
        for name, code, extra in (("floor (json load + dump)", CHILD_FLOOR, ()),
                                  ("rscovlm convert geochat", CHILD_RSCOVLM, (str(images),))):
            best = None
            for _ in range(args.repeat):
                res = run_child(code, str(src), str(work / f"out_{name.split()[0]}.jsonl"), *extra)
                best = res if best is None or res[0] < best[0] else best
            rows.append((name, *best))
        print(f"{'tool':28s} {'seconds':>8s} {'records':>8s} {'records/s':>10s} {'peak RSS MiB':>13s}")
        for name, dt, n, rss in rows:
            print(f"{name:28s} {dt:>8.2f} {n:>8d} {n / dt:>10.0f} {rss:>13.0f}")
        floor, ours = rows
        print(f"conversion costs {ours[1] / floor[1]:.1f}x the I/O floor")


if __name__ == "__main__":
    main()
