
"""Metrics. Detection: :func:`eval_dota` (DOTA mAP: devkit, MMRotate 1.x, 0.x), :func:`eval_dota_nc` (AP_nc),
:func:`eval_dota_sweep` (score-threshold sweep), :func:`eval_dota_f1` (mF1), :func:`eval_responses` (model
responses). Heavy submodules load on first use."""

_LAZY = {
    "eval_dota": "rscovlm.eval.dota_map",
    "eval_dota_nc": "rscovlm.eval.ap_nc",
    "eval_dota_sweep": "rscovlm.eval.sweep",
    "eval_dota_f1": "rscovlm.eval.f1",
    "eval_responses": "rscovlm.eval.responses",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rscovlm.eval' has no attribute {name!r}")
