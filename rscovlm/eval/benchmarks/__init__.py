"""The benchmark registry: one small module per benchmark family, each benchmark registered by name.

``get_benchmark(name)`` returns a :class:`~rscovlm.eval.benchmarks.base.Benchmark`; ``list_benchmarks()`` the
registered names. GeoGround subsets also take the reference's fixed-resolution suffixes ``_224``, ``_336``,
``_448``, ``_1008`` (``geoground_rsvg_test_336``: ``min_pixels = max_pixels = 336 * 336``). Modules are imported
on first use, so importing this package is cheap. See docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import importlib

from rscovlm.eval.benchmarks.base import (  # noqa: F401  (public API)
    ANSWER_FIELDS,
    AnswersError,
    Benchmark,
    BenchmarkDataError,
    Item,
)

_MODULES = ("lrs_vqa", "geoground", "vrsbench", "dota", "scene_cls", "rsvqa", "synthetic")
_REGISTRY: dict[str, Benchmark] = {}
_LOADED = False
PIXEL_SUFFIXES = {"_224": 224, "_336": 336, "_448": 448, "_1008": 1008}


def register_benchmark(cls):
    """Class decorator: instantiate and register under ``cls.name`` (a duplicate name is an error)."""
    bench = cls()
    if not bench.name:
        raise ValueError(f"{cls.__name__} has no name")
    if bench.name in _REGISTRY:
        raise ValueError(f"benchmark {bench.name!r} registered twice")
    _REGISTRY[bench.name] = bench
    return cls


def _load() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for mod in _MODULES:
            importlib.import_module(f"{__name__}.{mod}")


def list_benchmarks() -> list[str]:
    _load()
    return list(_REGISTRY)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark ``name`` (case-insensitive), or a GeoGround subset with a pixel suffix."""
    _load()
    key = name.strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    for suffix, side in PIXEL_SUFFIXES.items():
        base = key[: -len(suffix)] if key.endswith(suffix) else None
        if base in _REGISTRY and base.startswith("geoground_"):
            bench = copy.copy(_REGISTRY[base])
            bench.name = key
            bench.pixels = {"min_pixels": side * side, "max_pixels": side * side}
            bench.title = f"{bench.title} at {side}x{side}"
            return bench
    raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(_REGISTRY)} (GeoGround subsets also with "
                   f"{', '.join(PIXEL_SUFFIXES)})")


def get_benchmarks(names: str) -> list[Benchmark]:
    """Comma-separated names -> benchmarks (``all`` = every registered one)."""
    if names.strip() == "all":
        return [get_benchmark(n) for n in list_benchmarks()]
    return [get_benchmark(n) for n in names.split(",") if n.strip()]
