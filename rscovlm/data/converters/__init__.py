"""Converters from the paper's data sources to the unified records (one registered module per source).

``CONVERTERS`` maps a source name to its converter class; ``convert(source, config)`` runs one. Each module's
docstring documents the source's exact file format and box convention.
"""

from rscovlm.data.converters.base import (  # noqa: F401
    CONVERTERS,
    ConversionReport,
    ConvertConfig,
    Converter,
    convert,
    register_converter,
    report_path,
)
from rscovlm.data.converters import geochat, vhm, refgeo, teochatlas, llava_onevision, dota  # noqa: F401,E402

__all__ = ["CONVERTERS", "ConversionReport", "ConvertConfig", "Converter", "convert", "register_converter",
           "report_path"]
