"""``synthetic``: scenes from the seeded scene generator, so the whole harness runs with the tiny model and no data.

The scenes and samples are the demo's (:func:`rscovlm.demo.build_samples`: per scene one classification, one
counting VQA, one grounding and one detection question, written with the prompt set's strings); they are rendered
into ``<root>/synthetic/`` on first use (deterministic: same options, same images). Scoring is the demo's
(accuracy, Acc@0.5, AP_nc, mF1). Options (``with_options``): ``scenes``, ``holdout`` (unseen scenes scored
separately), ``size``, ``seed``, ``prompt_set`` - the demo's defaults.
"""

from __future__ import annotations

import copy
from pathlib import Path

from rscovlm.eval.benchmarks import register_benchmark
from rscovlm.eval.benchmarks.base import Benchmark, Item, answered


@register_benchmark
class Synthetic(Benchmark):
    name = "synthetic"
    title = "Synthetic scenes (classification, counting, grounding, detection)"
    task = "detection"  # the largest budget of the four question kinds
    prompt = "(the demo's samples; grounding and detection use the prompt set's evaluation strings)"
    layout = "<root>/synthetic/scene_NNN.png   rendered on first use (nothing to download)"
    rules = {"official": "the demo's scoring: classification 'label' rule, counting 'lower' rule, grounding "
                         "Acc@0.5 (continuous IoU), detection AP_nc (10 seeds) and mF1"}
    normalization = "see rscovlm.eval.answers ('label', 'lower')"
    pixels_note = "scene side is a multiple of 28: the model sees it unresized"
    scenes, holdout, size, seed, prompt_set = 10, 5, 336, 0, "reference"

    def with_options(self, **options) -> "Synthetic":
        bench = copy.copy(self)
        for key, value in options.items():
            if key not in ("scenes", "holdout", "size", "seed", "prompt_set"):
                raise KeyError(f"synthetic: unknown option {key!r}")
            setattr(bench, key, value)
        return bench

    def load(self, root: Path) -> list[Item]:
        from rscovlm.demo import DemoConfig, build_samples

        cfg = DemoConfig(scenes=self.scenes, holdout=self.holdout, size=self.size, seed=self.seed,
                         prompt_set=self.prompt_set)
        samples = build_samples(cfg, root / "synthetic", range(self.scenes + self.holdout))
        items = []
        for s in samples:
            msgs = s.conversation["messages"][:-1]
            image = next(p["image"] for m in msgs if m["role"] == "user" for p in m["content"]
                         if p.get("type") == "image")
            items.append(Item(id=f"{s.task}/{s.scene}", image=image, fields={},
                              target={"answer": s.answer, "labels": s.gt_labels, "quads": s.gt_quads},
                              meta={"task": s.task, "scene": s.scene, "messages": msgs,
                                    "plan": s.conversation["meta"]["plans"][0],
                                    "split": "train" if s.scene < self.scenes else "holdout"}))
        return items

    def messages(self, item: Item, prompt_set: str | None = None) -> list[dict]:
        return copy.deepcopy(item.meta["messages"])

    def eval_prompt(self, item: Item, prompt_set: str | None = None):
        raise NotImplementedError("synthetic items carry their messages (messages())")

    def score(self, items, answers, rule=None, partial=False, family=None, **options) -> dict:
        from rscovlm.demo import DemoSample, score
        from rscovlm.model.families import family_for

        self.check_rule(rule)
        todo, missing = answered(items, answers, partial)
        fam = family_for(family or "qwen2_5_vl")
        metrics, details = {}, {}
        for split in ("train", "holdout"):
            part = [it for it in todo if it.meta["split"] == split]
            if not part:
                continue
            samples = [DemoSample(it.meta["task"], it.meta["scene"],
                                  {"messages": it.meta["messages"], "meta": {"plans": [it.meta["plan"]]}},
                                  it.target["answer"], it.target["labels"], it.target["quads"]) for it in part]
            report, _ = score(samples, [answers[it.id].get("text") or "" for it in part], fam)
            details[split] = report
            metrics[f"{split}/classification"] = 100 * report["classification"]["accuracy"]
            metrics[f"{split}/vqa"] = 100 * report["vqa"]["accuracy"]
            metrics[f"{split}/Acc@0.5"] = 100 * report["grounding"]["acc@0.5"]
            metrics[f"{split}/AP_nc50"] = 100 * report["detection"]["AP_nc50"]
            metrics[f"{split}/mF1"] = 100 * report["detection"]["mF1"]
        return {"metrics": metrics, "details": details, "n": len(todo), "n_missing": missing}
