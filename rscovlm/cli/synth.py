"""``rscovlm synth``: deterministic synthetic aerial scenes with DOTA labels."""

from __future__ import annotations

import sys

from rscovlm.cli import CliError, add_group

HELP = "generate synthetic aerial scenes with rotated objects and DOTA labels"


def register(sub) -> None:
    group = add_group(sub, "synth", HELP)
    p = group.add_parser("scenes", help="write seeded synthetic scenes: OUT/images/*.png and OUT/labelTxt/*.txt")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=8, help="number of images")
    p.add_argument("--size", type=int, nargs="+", default=[4000], metavar="PX",
                   help="image side, or WIDTH HEIGHT")
    p.add_argument("--seed", type=int, default=0, help="seed; the same seed gives the same files")
    p.add_argument("--density", type=float, default=40.0, help="mean objects per megapixel")
    p.add_argument("--num-objects", type=int, default=None, help="exact number of objects per image")
    p.add_argument("--object-scale", type=float, default=1.0, help="object size multiplier (~0.3 m/px at 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_scenes)

    b = group.add_parser("big", help="write one (huge) scene as a tiled TIFF (or a PNG), strip by strip in "
                                     "bounded memory, + its labelTxt")
    b.add_argument("--out", required=True, help="output .tif/.tiff path (tiled BigTIFF; needs rscovlm[geo]) or "
                                                "a .png path; labels go to the same path with .txt")
    b.add_argument("--width", type=int, required=True, help="image width in pixels")
    b.add_argument("--height", type=int, required=True, help="image height in pixels")
    b.add_argument("--seed", type=int, default=0, help="seed; the same seed gives the same files")
    b.add_argument("--density", type=float, default=40.0, help="mean objects per megapixel")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(handler=_big)


def _scenes(args) -> int:
    from rscovlm.dota.synthetic import SceneConfig, generate_dataset

    if len(args.size) not in (1, 2) or min(args.size) < 1:
        raise CliError("--size takes one side or WIDTH HEIGHT, positive")
    if args.n < 1:
        raise CliError("--n must be >= 1")
    size = args.size[0] if len(args.size) == 1 else tuple(args.size)
    try:
        cfg = SceneConfig(density=args.density, num_objects=args.num_objects, object_scale=args.object_scale)
    except ValueError as err:
        raise CliError(str(err)) from err
    stems = generate_dataset(args.out, args.n, size, args.seed, cfg, progress=not args.no_progress)
    print(f"wrote {len(stems)} scenes to {args.out}/images and {args.out}/labelTxt", file=sys.stderr)
    return 0


def _big(args) -> int:
    from rscovlm._optional import MissingDependencyError
    from rscovlm.dota.synthetic import SceneConfig, write_scene

    if not args.out.lower().endswith((".tif", ".tiff", ".png")):
        raise CliError("--out must end with .tif, .tiff or .png")
    if args.width < 1 or args.height < 1:
        raise CliError("--width and --height must be positive")
    try:
        cfg = SceneConfig(density=args.density)
    except ValueError as err:
        raise CliError(str(err)) from err
    try:
        objects = write_scene(args.out, args.width, args.height, args.seed, cfg, progress=not args.no_progress)
    except MissingDependencyError as err:
        raise CliError(str(err)) from None
    print(f"wrote {args.out} ({args.width} x {args.height}, {len(objects)} objects)", file=sys.stderr)
    return 0
