"""rscovlm: one vision-language model for many remote-sensing tasks (RSCoVLM).

Data flow (each sub-package is one stage)::

    raw dataset -> data (converters, records, mixture, sample builder) -> model (collator) -> train
    image -> resolution -> infer (backends) -> protocol (text -> structures) -> eval (metrics)

``geometry`` holds the one box type every stage shares.
"""

__version__ = "0.1.0"
