"""Names of the metric options (protocols, score modes, F1 modes, tie orders, AP modes) and their one-line
summaries, without numpy: the single source for the metric modules and for ``rscovlm eval ... --help`` (whose
parser must build without loading the metric code; see :mod:`rscovlm.cli`)."""

from __future__ import annotations

#: protocol name -> one line for ``--help`` (the rules: :mod:`rscovlm.eval.dota_map`)
PROTOCOL_SUMMARIES: dict[str, str] = {
    "dota": "the DOTA devkit's Task1 rules: polygon IoU > thr, difficult objects ignored",
    "mmrotate1x": "MMRotate 1.x DOTAMetric (the reference RSCoVLM evaluation): min-area rectangles, IoU >= thr, "
                  "every object positive, nothing dropped",
    "mmrotate": "MMRotate 0.x eval_rbbox_map: as mmrotate1x, but rectangles with a side < 2 px are dropped "
                "(0.x loader)",
}
#: AP over the ranked list (:mod:`rscovlm.eval.ap`)
AP_MODE_NAMES = ("11point", "area")
#: order of equal scores (:mod:`rscovlm.eval.dota_map`)
TIE_ORDERS = ("reference", "stable")
#: what detections are ranked by in AP_nc (:mod:`rscovlm.eval.ap_nc`)
SCORE_MODES = ("random", "ones", "random-per-image")
#: the seeds of LMMRotate's map_nc_robustness_cal.py ("rnd:42", ...), in its order
LMMROTATE_SEEDS = (42, 666, 6666, 66666, 666666, 2024, 9968, 0, 1, 123)
#: mF1 definitions (:mod:`rscovlm.eval.f1`)
F1_MODES = ("one-to-one", "lmmrotate")
