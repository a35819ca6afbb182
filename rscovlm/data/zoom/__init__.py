"""LRS-VQA-Zoom builder (paper 3.4): zoom-chain training conversations from UHR detection datasets.

Modules, in the order of the build (:mod:`rscovlm.data.zoom.build` runs them; ``rscovlm data build-zoom``):

* :mod:`~rscovlm.data.zoom.inputs` - DOTA v1.0/v1.5/v2.0, STAR and GLH-Bridge labelTxt folders, unified COCO files;
* :mod:`~rscovlm.data.zoom.regions` - the 3 x 3 grid and coarse regions;
* :mod:`~rscovlm.data.zoom.templates` - count and compare questions (texts in ``templates.yaml``);
* :mod:`~rscovlm.data.zoom.synthesis` - the LLM client (cache, rate limit, retries, usage) and region QA
  (prompts in ``prompts.yaml``);
* :mod:`~rscovlm.data.zoom.mcq` - multiple-choice conversion;
* :mod:`~rscovlm.data.zoom.conversations` - zoom-chain and single-turn records, pass-2 crops.

Documentation: docs/zoom_data.md.
"""
