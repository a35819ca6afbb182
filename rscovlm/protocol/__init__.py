"""Text <-> structures: prompt sets, answer formats (written and read), grounding answers, the zoom-in tool call,
category vocabularies.

The default prompt set and answer style are the reference's (VisionXLab/RSCoVLM): ``get_prompt_set()`` and
``write_detections(objects)`` speak the released checkpoints' language; ``rscovlm-v0`` is rscovlm's earlier one.

The names below load their module on first use, so importing one light part (``rscovlm.protocol.categories``,
which command-line start-up needs) does not load the readers, prompt sets and YAML files.
"""

_EXPORTS = {
    "rscovlm.protocol.categories": ("CATEGORY_SETS", "DOTA_V1_0", "CategorySet", "canonical_label", "display_name",
                                    "get_category_set"),
    "rscovlm.protocol.detection": ("ANSWER_STYLES", "DEFAULT_ANSWER_STYLE", "NONE_ANSWER", "ParseResult",
                                   "format_detections", "parse_detections", "synonym_lookup", "write_detections"),
    "rscovlm.protocol.grounding": ("GROUNDING_RULES", "GroundingRead", "format_grounding", "parse_grounding",
                                   "read_grounding", "write_grounding"),
    "rscovlm.protocol.prompt_sets": ("DEFAULT_PROMPT_SET", "EvalPrompt", "PromptSet", "PromptSetError",
                                     "get_prompt_set", "list_prompt_sets"),
    "rscovlm.protocol.zoom": ("ZoomCall", "format_zoom_call", "parse_zoom_call", "zoom_box_to_model",
                              "zoom_messages"),
}
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rscovlm.protocol' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
