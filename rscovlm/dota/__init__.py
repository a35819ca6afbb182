"""DOTA tools, the stage beside data curation (:mod:`rscovlm.data`): labelTxt / Task1 files (:mod:`.io`),
splitting large images and their labels into patches (:mod:`.split`), merging patch detections back
(:mod:`.merge`) and seeded synthetic aerial scenes with exact DOTA labels (:mod:`.synthetic`). Commands:
``rscovlm dota split|merge``, ``rscovlm synth scenes|big``; see docs/dota_tools.md."""
