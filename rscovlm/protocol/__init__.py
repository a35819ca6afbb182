"""Text <-> structures: prompt sets, answer formats (written and read), grounding answers, the zoom-in tool call,
category vocabularies.

The default prompt set and answer style are the reference's (VisionXLab/RSCoVLM): ``get_prompt_set()`` and
``write_detections(objects)`` speak the released checkpoints' language; ``rscovlm-v0`` is rscovlm's earlier one.
"""

from rscovlm.protocol.categories import (
    CATEGORY_SETS,
    DOTA_V1_0,
    CategorySet,
    canonical_label,
    display_name,
    get_category_set,
)
from rscovlm.protocol.detection import (
    ANSWER_STYLES,
    DEFAULT_ANSWER_STYLE,
    NONE_ANSWER,
    ParseResult,
    format_detections,
    parse_detections,
    synonym_lookup,
    write_detections,
)
from rscovlm.protocol.grounding import (
    GROUNDING_RULES,
    GroundingRead,
    format_grounding,
    parse_grounding,
    read_grounding,
    write_grounding,
)
from rscovlm.protocol.prompt_sets import (
    DEFAULT_PROMPT_SET,
    EvalPrompt,
    PromptSet,
    PromptSetError,
    get_prompt_set,
    list_prompt_sets,
)
from rscovlm.protocol.zoom import ZoomCall, format_zoom_call, parse_zoom_call, zoom_box_to_model, zoom_messages

__all__ = [
    "CATEGORY_SETS", "DOTA_V1_0", "CategorySet", "canonical_label", "display_name", "get_category_set",
    "ANSWER_STYLES", "DEFAULT_ANSWER_STYLE", "NONE_ANSWER", "ParseResult", "format_detections", "parse_detections",
    "synonym_lookup", "write_detections",
    "GROUNDING_RULES", "GroundingRead", "format_grounding", "parse_grounding", "read_grounding", "write_grounding",
    "DEFAULT_PROMPT_SET", "EvalPrompt", "PromptSet", "PromptSetError", "get_prompt_set", "list_prompt_sets",
    "ZoomCall", "format_zoom_call", "parse_zoom_call", "zoom_box_to_model", "zoom_messages",
]
