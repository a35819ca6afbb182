"""``rscovlm dota split`` / ``rscovlm dota merge``: DOTA patch tools (see docs/dota_tools.md)."""

from __future__ import annotations

import sys

from rscovlm.cli import CliError, add_group, config_help, config_option

HELP = "DOTA tools: split large images into patches, merge patch detections"


def register(sub) -> None:
    from rscovlm.dota.merge import MergeConfig
    from rscovlm.dota.split import SplitConfig

    group = add_group(sub, "dota", HELP)

    p = group.add_parser("split", help="split images (+ labelTxt) into patches, same output as mmrotate "
                                       "img_split",
                         description="Split large images and their labelTxt files into overlapping patches: the "
                                     "same windows, kept objects, difficult marks and pixels as mmrotate's "
                                     "img_split. Writes OUT/images/{stem}__{size}__{x}___{y}.png and "
                                     "OUT/annfiles/*.txt (see docs/dota_tools.md).")
    p.add_argument("--img-dir", required=True, help="folder of images (.png .jpg .JPG .tif .bmp)")
    p.add_argument("--ann-dir", default=None, help="folder of labelTxt files {stem}.txt (optional)")
    p.add_argument("--out-dir", required=True, help="writes OUT/images/*.png and OUT/annfiles/*.txt")
    p.add_argument("--size", type=int, **config_option(SplitConfig, "size"))
    p.add_argument("--gap", type=int, **config_option(SplitConfig, "gap"))
    p.add_argument("--iof-thr", type=float, **config_option(SplitConfig, "iof_thr"))
    p.add_argument("--img-rate-thr", type=float, **config_option(SplitConfig, "img_rate_thr"))
    p.add_argument("--padding-value", type=int, **config_option(SplitConfig, "padding_value"))
    p.add_argument("--workers", type=int, **config_option(SplitConfig, "workers"))
    p.add_argument("--missing-labels", choices=["error", "empty"], **config_option(SplitConfig, "missing_labels"))
    p.add_argument("--png-encoder", choices=["auto", "fpng", "opencv"], **config_option(SplitConfig, "png_encoder"))
    p.add_argument("--skip-invalid", action="store_true", help=config_help(SplitConfig, "skip_invalid"))
    p.add_argument("--band-megapixels", type=float, **config_option(SplitConfig, "band_megapixels"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_split)

    m = group.add_parser("merge", help="merge patch Task1 results into full-image Task1 files",
                         description="Merge patch Task1 results into full-image Task1 files: shift each "
                                     "detection by its patch offset (from the image id {stem}__{size}__{x}___{y}) "
                                     "and run per-class polygon NMS, as mmrotate's merge does.")
    m.add_argument("--det-dir", required=True, help="Task1 folder whose image ids are patch names")
    m.add_argument("--out-dir", required=True, help="where to write the full-image Task1_{class}.txt files")
    m.add_argument("--nms-iou", type=float, **config_option(MergeConfig, "iou_thr"))
    m.add_argument("--workers", type=int, **config_option(MergeConfig, "workers"))
    m.add_argument("--skip-invalid", action="store_true", help=config_help(MergeConfig, "skip_invalid"))
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    m.set_defaults(handler=_merge)


def _split(args) -> int:
    from rscovlm._optional import MissingDependencyError
    from rscovlm.dota.io import DotaFormatError
    from rscovlm.dota.split import SplitConfig, SplitWorkerDied, split_dataset

    try:
        cfg = SplitConfig(size=args.size, gap=args.gap, iof_thr=args.iof_thr, img_rate_thr=args.img_rate_thr,
                          padding_value=args.padding_value, workers=args.workers,
                          missing_labels=args.missing_labels, png_encoder=args.png_encoder,
                          skip_invalid=args.skip_invalid, band_megapixels=args.band_megapixels)
        report = split_dataset(args.img_dir, args.out_dir, cfg, ann_dir=args.ann_dir,
                               progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FileExistsError, DotaFormatError, MissingDependencyError,
            SplitWorkerDied) as err:  # ImageReadError (a damaged image, named) is a ValueError
        raise CliError(str(err)) from err
    print(report.summary(), file=sys.stderr)
    return 0


def _merge(args) -> int:
    from rscovlm.dota.io import DotaFormatError
    from rscovlm.dota.merge import MergeConfig, merge_task1_dir

    try:
        cfg = MergeConfig(iou_thr=args.nms_iou, workers=args.workers, skip_invalid=args.skip_invalid)
        report = merge_task1_dir(args.det_dir, args.out_dir, cfg, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, DotaFormatError) as err:
        raise CliError(str(err)) from err
    print(report.summary(), file=sys.stderr)
    return 0
