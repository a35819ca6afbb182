"""Text <-> structures: the detection response format, grounding answers, category vocabularies."""

from rscovlm.protocol.categories import (
    CATEGORY_SETS,
    DOTA_V1_0,
    CategorySet,
    canonical_label,
    display_name,
    get_category_set,
)
from rscovlm.protocol.detection import NONE_ANSWER, ParseResult, format_detections, parse_detections
from rscovlm.protocol.grounding import format_grounding, parse_grounding

__all__ = [
    "CATEGORY_SETS", "DOTA_V1_0", "CategorySet", "canonical_label", "display_name", "get_category_set",
    "NONE_ANSWER", "ParseResult", "format_detections", "parse_detections", "format_grounding", "parse_grounding",
]
