"""``rscovlm serve``: a local web page to run a checkpoint on an image and look at the result, and a browser
for a benchmark harness run folder.

- :mod:`rscovlm.serve.app`: the FastAPI application (routes, the one model queue, task runs with their prompts,
  raw answers and timing, the results browser's data).
- :mod:`rscovlm.serve.images`: upload limits (size, type, pixel count), the images a page may show, and map tiles
  read by windows through :class:`rscovlm.imageio.ImageSource`.
- ``static/``: the two pages and Leaflet 1.9.4 (vendored from the npm registry with its licence; nothing is
  fetched from the internet at run time).

Needs the ``serve`` extra (``pip install -e ".[serve]"``). See docs/serve.md.
"""
