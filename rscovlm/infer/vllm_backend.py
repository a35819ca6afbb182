"""vLLM offline engine backend (the ``vllm`` extra: ``pip install 'rscovlm[vllm]'``; needs a GPU).

One ``vllm.LLM`` per backend, built from :class:`VLLMConfig` (tensor / data parallel sizes, memory share,
context length, prefix caching and any other engine argument passed through ``engine_kwargs``). Requests are
rendered with the checkpoint's own chat template (the processor's ``apply_chat_template``, as the transformers
backend does) and handed over with their images already resized to our model sizes
(:func:`rscovlm.infer.backends.resolve_images`); each request carries ``mm_processor_kwargs`` with
``min_pixels``/``max_pixels`` spanning its images, so vLLM's processor keeps them as they are and the grid is
ours. At most ``limit_images`` images per prompt (``limit_mm_per_prompt``; the zoom chain's second pass has two).

Decoding as every backend (:class:`~rscovlm.infer.backends.DecodingOptions`): temperature 0 unless
``do_sample``; generation stops at the end tokens of the checkpoint's generation config and tokenizer (the
reference passes the stop string ``"<im_end>"``, a typo that never matches; the end token stops it anyway).
``logprobs=True`` asks vLLM for the chosen token's log-probability (``SamplingParams(logprobs=0)``).

Prefix caching (on by default) lets the zoom chain's second pass reuse the key/values of the first pass's prompt
(the whole image), so the chain costs the crop's tokens on top of one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rscovlm.infer.backends import (
    TASK_MAX_NEW_TOKENS,
    DecodingOptions,
    Generation,
    _eos_ids,
    budget,
    register_backend,
    resolve_images,
    token_texts,
)


@dataclass
class VLLMConfig(DecodingOptions):
    """The vLLM engine and its requests."""

    model: str = field(default="", metadata={"help": "checkpoint folder or hub id"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "GPUs one model is split over"})
    data_parallel_size: int = field(default=1, metadata={"help": "model replicas (vLLM's data_parallel_size)"})
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "share of GPU memory vLLM may take"})
    max_model_len: int | None = field(default=None, metadata={"help": "context length (default: the model's)"})
    max_num_seqs: int | None = field(default=None, metadata={"help": "sequences decoded at once"})
    dtype: str = field(default="auto", metadata={"help": "weight dtype (auto, bfloat16, float16, float32)"})
    enable_prefix_caching: bool = field(default=True, metadata={"help": "reuse the key/values of shared prompt "
                                                                        "prefixes (the zoom chain's two passes)"})
    limit_images: int = field(default=2, metadata={"help": "images per prompt (limit_mm_per_prompt)"})
    engine_kwargs: dict = field(default_factory=dict, metadata={"help": "further vllm.LLM arguments"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "longest answer for every task; default: the per-task budget (task_budgets)"})
    task_budgets: dict = field(default_factory=lambda: dict(TASK_MAX_NEW_TOKENS), metadata={
        "help": "longest answer per task (detection 16384, as the reference; grounding, vqa, ... 1024)"})
    min_pixels: int | None = field(default=None, metadata={"help": "pixel budget of images without their own; "
                                                                   "default: the processor's"})
    max_pixels: int | None = field(default=None, metadata={"help": "pixel budget of images without their own; "
                                                                   "default: the processor's"})

    def __post_init__(self) -> None:
        self.check_decoding()
        if not self.model:
            raise ValueError("the vllm backend needs a model (checkpoint folder or hub id)")


@register_backend("vllm")
class VLLMBackend:
    """See the module docstring. ``llm`` (an existing ``vllm.LLM``) skips building the engine."""

    def __init__(self, config: VLLMConfig | None = None, llm=None, **overrides):
        from transformers import AutoProcessor

        from rscovlm._optional import require
        from rscovlm.resolution import ResolutionPolicy

        self._vllm = require("vllm", "vllm", "the vLLM backend")
        self.config = c = config or VLLMConfig(**overrides)
        self.processor = AutoProcessor.from_pretrained(c.model)
        ip = self.processor.image_processor
        size = dict(ip.size)
        lo = c.min_pixels if c.min_pixels is not None else size["shortest_edge"]
        hi = c.max_pixels if c.max_pixels is not None else size["longest_edge"]
        self.policy = ResolutionPolicy(min_pixels=lo, max_pixels=hi, factor=int(ip.patch_size * ip.merge_size),
                                       uhr_min_pixels=max(hi, 4 * 1008 * 1008))
        if llm is None:
            kwargs = dict(model=c.model, tensor_parallel_size=c.tensor_parallel_size, dtype=c.dtype,
                          gpu_memory_utilization=c.gpu_memory_utilization,
                          enable_prefix_caching=c.enable_prefix_caching,
                          limit_mm_per_prompt={"image": c.limit_images}, seed=c.seed or 0)
            if c.data_parallel_size != 1:
                kwargs["data_parallel_size"] = c.data_parallel_size
            if c.max_model_len is not None:
                kwargs["max_model_len"] = c.max_model_len
            if c.max_num_seqs is not None:
                kwargs["max_num_seqs"] = c.max_num_seqs
            kwargs.update(c.engine_kwargs)
            llm = self._vllm.LLM(**kwargs)
        self.llm = llm
        self.image_token_id = getattr(self.processor, "image_token_id", None)
        self._eos = sorted(_eos_ids(_GenerationConfigHolder(c.model), self.processor.tokenizer))

    def _sampling(self, limit: int, logprobs: bool):
        c = self.config
        kwargs = dict(max_tokens=limit, stop_token_ids=self._eos, logprobs=0 if logprobs else None,
                      seed=c.seed, skip_special_tokens=True)
        if c.do_sample:
            kwargs.update(temperature=c.temperature, top_p=c.top_p, top_k=c.top_k if c.top_k else -1)
        else:
            kwargs.update(temperature=0.0)
        return self._vllm.SamplingParams(**kwargs)

    def generate_results(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                         progress=None, task: str | None = None, logprobs: bool | None = None) -> list[Generation]:
        limit = budget(task, max_new_tokens, self.config.max_new_tokens, self.config.task_budgets)
        want = self.config.logprobs if logprobs is None else logprobs
        resolved, sizes = resolve_images(conversations, self.policy)
        prompts = []
        for messages, conv_sizes in zip(resolved, sizes):
            text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            images = [p["image"] for m in messages if isinstance(m["content"], list) for p in m["content"]
                      if p.get("type") == "image"]
            prompt = {"prompt": text}
            if images:
                areas = [w * h for w, h in conv_sizes]
                prompt["multi_modal_data"] = {"image": images}
                prompt["mm_processor_kwargs"] = {"min_pixels": min(areas), "max_pixels": max(areas)}
            prompts.append(prompt)
        outputs = self.llm.generate(prompts, self._sampling(limit, want), use_tqdm=False)
        results = []
        tokenizer = self.processor.tokenizer
        for out, conv_sizes in zip(outputs, sizes):
            o = out.outputs[0]
            ids = list(o.token_ids)
            token_lp = toks = None
            if want and o.logprobs is not None:
                token_lp = tuple(float(step[tid].logprob) for step, tid in zip(o.logprobs, ids))
                toks = token_texts(tokenizer, ids, o.text)
            visual = None
            if self.image_token_id is not None and out.prompt_token_ids is not None:
                visual = sum(1 for t in out.prompt_token_ids if t == self.image_token_id)
            reason = "length" if o.finish_reason == "length" else ("stop" if o.finish_reason else None)
            results.append(Generation(o.text, reason, limit, len(ids), tuple(conv_sizes), visual, token_lp, toks,
                                      tuple(ids)))
        if progress is not None:
            progress.update(len(results))
        return results

    def generate(self, conversations: list[list[dict]], max_new_tokens: int | None = None,
                 progress=None, task: str | None = None) -> list[str]:
        """The texts of :meth:`generate_results`."""
        return [g.text for g in self.generate_results(conversations, max_new_tokens, progress, task)]


class _GenerationConfigHolder:
    """The checkpoint's generation config, shaped like a model for :func:`_eos_ids`."""

    def __init__(self, model: str):
        from transformers import GenerationConfig

        try:
            self.generation_config = GenerationConfig.from_pretrained(model)
        except OSError:
            self.generation_config = None
