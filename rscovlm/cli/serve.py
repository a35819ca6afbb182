"""``rscovlm serve``: the local web viewer (rscovlm.serve; docs/serve.md)."""

from __future__ import annotations

import sys

from rscovlm.cli import CliError, library_output_to_stderr, status

HELP = "a local web page: run a task on an image and see it drawn, browse a benchmark run's answers"


def register(sub) -> None:
    from rscovlm.cli._infer import _backend_options

    p = sub.add_parser("serve", help=HELP,
                       description="Serve a web page on HOST:PORT to upload or pick an image (PNG, JPEG, GeoTIFF), "
                                   "run a task on it (detect, zoom-vqa, ground, vqa, classify) with the model and "
                                   "see the result drawn on the image: boxes with labels and per-object "
                                   "confidence, the zoom chain's region and the crop it read, the prompt sent, the "
                                   "raw answer and timing. Large images pan and zoom by tiles read by windows. "
                                   "With --results, /results browses a harness run folder (O/<bench>/answers.jsonl)"
                                   ": per benchmark, wrong answers filtered, image, prompt, answer, ground truth "
                                   "and score of each item. Model calls run one at a time. Uploads are written "
                                   "to a temporary folder on this machine and removed on exit. Binds to "
                                   "127.0.0.1 unless --host says otherwise.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes the page and its uploads "
                                                       "to the network)")
    p.add_argument("--port", type=int, default=7860, help="port")
    p.add_argument("--results", default=None, metavar="O", help="harness run folder for the results browser")
    p.add_argument("--images", default=None, metavar="DIR", help="folder whose images the page may pick")
    p.add_argument("--upload-dir", default=None, help="folder for uploads (default: a temporary folder removed "
                                                      "on exit)")
    p.add_argument("--max-upload-mb", type=float, default=512.0, help="largest upload in MiB")
    p.add_argument("--max-megapixels", type=float, default=1000.0, help="largest image in megapixels")
    p.add_argument("--max-waiting", type=int, default=8, help="requests that may wait for the model (more are "
                                                              "told the server is busy)")
    p.add_argument("--categories", default="dota-v1.0", help="detection vocabulary: a category set or "
                                                             "comma-separated class names")
    _backend_options(p)
    p.set_defaults(handler=_serve)


def _serve(args) -> int:
    from rscovlm._optional import MissingDependencyError, require

    try:
        require("fastapi", "serve")
        require("uvicorn", "serve")
    except MissingDependencyError as err:
        raise CliError(str(err)) from None
    import uvicorn

    from rscovlm.cli._infer import make_backend
    from rscovlm.serve.app import ServeConfig, create_app

    try:
        config = ServeConfig(model_name=args.model, backend_name=args.backend, results=args.results,
                             images=args.images, upload_dir=args.upload_dir, max_upload_mb=args.max_upload_mb,
                             max_megapixels=args.max_megapixels, max_waiting=args.max_waiting,
                             categories=args.categories, prompt_set=args.prompt_set,
                             max_new_tokens=args.max_new_tokens)
    except ValueError as err:
        raise CliError(str(err)) from None
    with library_output_to_stderr():
        backend = make_backend(args)
        try:
            app = create_app(backend, config)
        except ValueError as err:
            raise CliError(str(err)) from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        status(f"note: --host {args.host} lets other machines reach this page, its uploads and its model")
    status(f"serving {args.model} on http://{args.host}:{args.port}/ (results browser: /results); Ctrl-C stops")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    print("stopped", file=sys.stderr)
    return 0
