"""Boxes and their frames, conversions, polygon IoU and rotated NMS (pure numpy/shapely)."""

from rscovlm.geometry.boxes import (
    BOX_DIMS,
    BoxKind,
    Boxes,
    Frame,
    hbb_to_quad,
    normalize_obb,
    normalize_quads,
    obb_to_quad,
    quad_to_hbb,
    quad_to_obb,
    signed_area,
)
from rscovlm.geometry.iou import (
    hbb_iou,
    hbb_iou_pairs,
    hbb_overlap_pairs,
    poly_areas,
    poly_intersection_pairs,
    poly_iof,
    poly_iou,
    poly_iou_pairs,
    rbox_iou,
)
from rscovlm.geometry.nms import batched_poly_nms, poly_nms
from rscovlm.geometry.objects import ObjectSet

__all__ = [
    "BOX_DIMS", "BoxKind", "Boxes", "Frame", "hbb_to_quad", "normalize_obb", "normalize_quads", "obb_to_quad",
    "quad_to_hbb", "quad_to_obb", "signed_area", "ObjectSet", "hbb_iou", "hbb_iou_pairs", "hbb_overlap_pairs",
    "poly_areas", "poly_intersection_pairs", "poly_iof", "poly_iou", "poly_iou_pairs", "rbox_iou",
    "batched_poly_nms", "poly_nms",
]
