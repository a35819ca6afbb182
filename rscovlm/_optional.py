"""Optional dependencies: import them with a message that names the extra to install.

Packages outside the core install belong to extras of ``pyproject.toml`` (``geo``: tifffile, rasterio, pyvips;
``fast``: numba, fpng, imagecodecs; ``train``: torch, transformers ...). Code that needs one calls
:func:`require`, so that a user without it reads ``... needs the package 'tifffile': pip install
'rscovlm[geo]'`` instead of a bare ``ModuleNotFoundError``; :func:`available` asks without importing (importing
some of them starts threads, which a process that later forks must avoid).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType


class MissingDependencyError(ImportError):
    """An optional package is not installed; the message names the extra (``pip install 'rscovlm[EXTRA]'``)."""

    def __init__(self, module: str, extra: str, purpose: str = ""):
        self.module, self.extra = module, extra
        what = f"{purpose} needs" if purpose else "this needs"
        super().__init__(f"{what} the package '{module}', which is not installed: pip install 'rscovlm[{extra}]'",
                         name=module)


def available(module: str) -> bool:
    """Whether ``module`` can be imported (found on the path, or already imported), without importing it."""
    if module in sys.modules:
        return sys.modules[module] is not None  # None: marked unimportable (also how tests simulate absence)
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import and return ``module``; if it is missing raise :class:`MissingDependencyError` naming ``extra``.

    Only the absence of ``module`` itself is translated: an ImportError raised inside an installed package (a
    broken install, a missing shared library) propagates as it is."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = getattr(err, "name", None) or ""
        if missing == module or module.startswith(missing + "."):
            raise MissingDependencyError(module, extra, purpose) from None
        raise
