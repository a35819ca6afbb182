"""The optional compiled kernels (``rscovlm._native``, source ``rscovlm/_native.c``).

``pip install`` builds them when a C compiler is present (``setup.py``; the build is optional, a failure leaves
the package without them). Each kernel has a numpy twin that gives bitwise the same results, so they change
speed, never numbers: polygon intersections (:mod:`rscovlm.geometry.iou`), Task1/labelTxt parsing
(:mod:`rscovlm.dota.io`), AP_nc over score thresholds (:mod:`rscovlm.eval.ap_nc`).

``RSCOVLM_NO_NATIVE=1`` switches them off (the numpy code runs). A build from older sources (its ``API`` differs
from :data:`API`, e.g. an editable install not rebuilt after an update) is not used, with a warning.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

API = 2  # NATIVE_API of rscovlm/_native.c that this code expects

_loaded: list = []  # [module or None], filled on first use


def native() -> ModuleType | None:
    """The compiled module, or ``None`` (not built, stale, or switched off by ``RSCOVLM_NO_NATIVE``)."""
    if os.environ.get("RSCOVLM_NO_NATIVE"):
        return None
    if not _loaded:
        try:
            from rscovlm import _native as mod
        except ImportError:
            mod = None
        if mod is not None and getattr(mod, "API", None) != API:
            warnings.warn(f"rscovlm._native ({mod.__file__}) was built from other sources (API "
                          f"{getattr(mod, 'API', None)}, expected {API}); rebuild it with `pip install -e .` - "
                          "using the numpy code meanwhile", RuntimeWarning, stacklevel=2)
            mod = None
        _loaded.append(mod)
    return _loaded[0]
