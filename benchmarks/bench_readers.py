"""Text readers: CPU time per answer on degenerate and dense answers, and throughput on ordinary ones.

Cases: the whitespace runs that took cubic time before issue 8 (on the old reader, measured on the same
2-core machine: 1000 spaces 0.44 s, 2000 tabs 3.3 s, 5000 tabs 69 s, 150k spaces never finished), megabyte
answers of every kind, and dense valid answers (as many objects as fit in the 131,072-character limit) in the
rscovlm-v0, reference and GeoChat forms. Each line
prints the CPU time of ``parse_detections`` (best of three) and its ratio to the 50 ms per-answer target; the JSON
answer also prints the ratio to ``json.loads`` of the same text (the stdlib decoder, which reads but does not
check anything), the floor any JSON reader pays. The last line is the throughput on 20,000 answers of every
form (a few hundred characters each).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_readers.py``. Target: every case under 50 ms (ratio < 1).
"""

from __future__ import annotations

import json
import time

import numpy as np

from rscovlm.geometry import Boxes, Frame, ObjectSet
from rscovlm.protocol import DOTA_V1_0, format_detections, parse_detections, write_detections

TARGET_S = 0.050


def _cpu(fn, text, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.thread_time()
        fn(text)
        best = min(best, time.thread_time() - t0)
    return best


def _dense(n: int, form: str, style: str = "rscovlm-v0") -> str:
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 900, (n, 2))
    boxes = Boxes(np.concatenate([xy, xy + rng.integers(5, 90, (n, 2))], 1).astype(float), "hbb").to_quad()
    labels = [DOTA_V1_0.classes[i] for i in rng.integers(0, len(DOTA_V1_0.classes), n)]
    objects = ObjectSet(Boxes(boxes.data, "quad", Frame.model(1008, 1008)), labels)
    if style == "geochat":
        return "".join(f"<p>{lab}</p> {{<{int(b[0]) % 100}><{int(b[1]) % 100}><{int(b[2]) % 100}><{int(b[5]) % 100}>"
                       f"|<{i % 90}>}}" for i, (b, lab) in enumerate(zip(boxes.data, labels)))
    return write_detections(objects, form, style)


def main() -> None:
    mb = 1_000_000
    cases = {
        "1000 spaces + x": " " * 1000 + "x", "2000 tabs + x": "\t" * 2000 + "x", "5000 tabs + x": "\t" * 5000 + "x",
        "150k spaces + x": " " * 150_000 + "x", "1 MB tabs + x": "\t" * mb + "x",
        "1 MB deep JSON": "[" * (mb // 2) + "]" * (mb // 2), "1 MB '{}'": "{}" * (mb // 2),
        "1 MB prose after boxes": "plane: (1,1),(2,2) at 3 o'clock " * (mb // 34),
        "3000 objects, plain": _dense(3000, "plain"), "1500 objects, json": _dense(1500, "json"),
        "3000 objects, ref. plain": _dense(3000, "plain", "reference"),
        "1500 objects, ref. json": _dense(1500, "json", "reference"),
        "3000 objects, geochat": _dense(3000, "", "geochat"),
    }
    print(f"{'case':<26}{'chars':>10}{'ms':>9}{'/ 50 ms':>9}{'/ json.loads':>14}")
    for name, text in cases.items():
        t = _cpu(parse_detections, text)
        line = f"{name:<26}{len(text):>10}{1000 * t:>9.2f}{t / TARGET_S:>9.2f}"
        if "json" in name and "deep" not in name:
            body = text.strip("`\n")[len("json"):]
            line += f"{t / _cpu(json.loads, body):>14.1f}"
        print(line)
    rng = np.random.default_rng(1)
    ordinary = [_dense(int(rng.integers(1, 20)), ("plain", "json")[i % 2], ("rscovlm-v0", "reference")[i // 2 % 2])
                for i in range(200)]
    ordinary += ["There is none.", "There are none.", "plane: (10,10),(20,20) at 3 o'clock", "ship: (1,1),(2,2),(3"]
    answers = [ordinary[i % len(ordinary)] for i in range(20_000)]
    t0 = time.thread_time()
    for text in answers:
        parse_detections(text, categories=DOTA_V1_0)
    dt = time.thread_time() - t0
    print(f"throughput: {len(answers) / dt:,.0f} answers/s ({sum(map(len, answers)) / dt / 1e6:.1f} M characters/s) "
          f"on one core")


if __name__ == "__main__":
    main()
