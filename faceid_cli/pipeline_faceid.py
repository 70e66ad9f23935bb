"""FaceIDPipeline: a frozen diffusers SD/SDXL pipeline, an identity encoder and a face analyzer.

``encode`` turns face photos into an :class:`~faceid_cli.identity.Identity` (the pseudo-words);
calling the pipeline renders a prompt with ``S*`` standing for them. The diffusion model's weights
and structure are never touched: the words enter through ``prompt_embeds``.

Methods (``method``) are modules of :mod:`faceid_cli.methods`, reached only through
:func:`~faceid_cli.methods.get_method`: ``m2`` (DreamIdentity's M² encoder, the default),
``clip-image`` (the paper's CLIP-image baseline: one word from CLIP's last-layer feature),
``faceclip`` (FaceCLIP's joint ID-text encoder, SDXL), ``none`` (``S*`` replaced by "a person": the
base model without identity, for comparisons).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .conditioning import DEFAULT_IDENTITY_TOKEN, PromptEmbeds, replace_identity, word_dims_of
from .errors import InvalidArgumentError, MissingModelError, OutOfMemoryError
from .identity import Identity, family_of, is_identity_file
from .methods import get_method
from .models.registry import (
    check_model_available,
    default_size,
    load_pipeline,
    resolve_device,
    resolve_dtype,
    resolve_model,
)
from .models.schedulers import check_scheduler, make_scheduler
from .names import GENERATION_DEFAULTS as DEFAULTS


@dataclass(frozen=True)
class RenderRequest:
    identity: Identity | None
    prompt: str
    negative_prompt: str
    seed: int
logger = logging.getLogger(__name__)


def check_method(method: str) -> str:
    get_method(method)
    return method


class FaceIDPipeline:
    def __init__(self, pipe, encoder, *, model_name: str, method: str = DEFAULTS["method"], analyzer=None,
                 analyzer_factory: Callable | None = None, identity_token: str = DEFAULT_IDENTITY_TOKEN,
                 method_options: dict | None = None):
        self.pipe = pipe
        self.encoder = encoder
        self.model_name = model_name
        self.method = check_method(method)
        self.method_impl = get_method(method)
        #: per-method settings, e.g. FaceCLIP's ``negative`` branch ("release" or "text")
        self.method_options = self._own_options(dict(method_options or {}))
        self.identity_token = identity_token
        self._analyzer = analyzer
        self._analyzer_factory = analyzer_factory
        self._scheduler_config = pipe.scheduler.config
        self._scheduler_name = None
        self.last_encode_seconds: dict[str, float] = {}

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_model(
        cls, model: str = DEFAULTS["model"], *, encoder=None, method: str = DEFAULTS["method"], device: str = "auto",
        dtype: str = "auto", allow_download: bool = False, face_backend: str = "auto",
        analyzer_options=None, analyzer=None, identity_token: str = DEFAULT_IDENTITY_TOKEN,
        method_options: dict | None = None,
    ) -> FaceIDPipeline:
        """Check everything that can be checked cheaply, then load the model and the encoder.

        ``encoder``: a checkpoint path, an already loaded IdentityEncoder, or None (tiny models:
        a seeded random one). ``analyzer``: a face analyzer to reuse (else one is made on demand).
        """
        from .encoders import IdentityEncoder

        uses_identity = get_method(method).uses_identity
        ref = resolve_model(model)
        check_model_available(ref, allow_download)
        if uses_identity:
            encoder = encoder if encoder is not None else shipped_encoder(ref, method)
            require_encoder(ref, encoder)
        if isinstance(encoder, (str, os.PathLike)) and uses_identity:
            encoder = get_method(method).locate_encoder(encoder)
        from .faces import AnalyzerOptions

        analyzer_options = AnalyzerOptions.for_model(analyzer_options, model)
        if analyzer is None and uses_identity:
            from .faces import resolve_backend

            # a missing insightface pack fails now, not after the diffusion model has loaded
            if resolve_backend(face_backend, analyzer_options) == "insightface":
                from .faces.backend_insightface import find_pack, missing_pack_error

                options = analyzer_options
                if find_pack(options.insightface_root, options.insightface_pack) is None:
                    raise missing_pack_error(options.insightface_root, options.insightface_pack)
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        pipe = load_pipeline(ref, torch_device, torch_dtype, allow_download)
        dims = word_dims_of(pipe)
        identity_encoder = None
        if uses_identity:
            if isinstance(encoder, IdentityEncoder):
                check_encoder_fits(encoder, method, dims, encoder.name)
                identity_encoder = encoder
            else:
                identity_encoder = load_identity_encoder(model, encoder, method, dims)
            identity_encoder.to(torch_device)
            get_method(method).prepare_pipeline(pipe, identity_encoder)

        def analyzer_factory():
            from .faces import load_analyzer

            return load_analyzer(face_backend, analyzer_options)

        return cls(pipe, identity_encoder, model_name=model, method=method, analyzer=analyzer,
                   analyzer_factory=analyzer_factory, identity_token=identity_token, method_options=method_options)

    @property
    def analyzer(self):
        if self._analyzer is None:
            self._analyzer = self._analyzer_factory()
        return self._analyzer

    @property
    def device(self) -> torch.device:
        return self.pipe.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.unet.dtype

    @property
    def word_dims(self) -> tuple[int, ...]:
        return word_dims_of(self.pipe)

    @property
    def uses_identity(self) -> bool:
        return self.method_impl.uses_identity

    @property
    def default_size(self) -> int:
        return default_size(self.pipe)

    # ---- identities --------------------------------------------------------------------------
    def encode(self, sources: Sequence[str | os.PathLike], face_index: int = 0,
               max_pixels: int | None = None) -> Identity:
        """Encode one or more photos of one person (features averaged) into an Identity."""
        if self.encoder is None:
            raise InvalidArgumentError(f"method '{self.method}' uses no identity", "use --method m2")
        timings: dict[str, float] = {}
        identity = encode_identity(self.encoder, self.analyzer, sources, method=self.method,
                                   face_index=face_index, max_pixels=max_pixels, timings=timings)
        self.last_encode_seconds = timings
        return identity

    def identity_from(self, source: str | os.PathLike, face_index: int = 0,
                      max_pixels: int | None = None) -> Identity | None:
        """An Identity from a photo or a folder of one person's photos (encoded now, fused) or an
        identity file; None for method 'none'."""
        from .images import face_photos

        if not self.uses_identity:
            return None
        if is_identity_file(source):
            return self.check_identity(Identity.load(source), str(source))
        return self.encode(face_photos(source), face_index=face_index, max_pixels=max_pixels)

    def check_identity(self, identity: Identity, source: str) -> Identity:
        """Refuse an identity the model cannot take; warn when another encoder made it."""
        identity.check_compatible(self.word_dims, source, self.method)
        made_with = identity.metadata.get("encoder_hash")
        if made_with and self.encoder is not None and made_with != self.encoder.content_hash:
            logger.warning("identity file '%s' was made with another encoder (%s) than this one (%s)",
                           source, identity.metadata.get("encoder_id"), self.encoder.name)
        return identity

    def prompt_embeds(self, identity: Identity, prompt: str) -> PromptEmbeds:
        identity.check_compatible(self.word_dims, "identity", self.method)
        with torch.inference_mode():
            return self.method_impl.prompt_embeds(self.pipe, self.encoder, [identity], [prompt], self.identity_token)

    def _own_options(self, options: dict) -> dict:
        """The options this method reads: a negative branch is kept only by a method that builds
        its own (batch's and evaluate's settings apply to every job), and only where it is not the
        default, so images record what changed them."""
        branches = self.method_impl.negative_branches
        if "negative" in options:
            if branches and options["negative"] not in branches:
                raise InvalidArgumentError(f"negative branch '{options['negative']}' is not one of "
                                           f"{', '.join(branches)}", "pick one of those")
            if not branches or options["negative"] == branches[0]:
                del options["negative"]
        return options

    def neutral_embeds(self, prompts: Sequence[str]) -> PromptEmbeds:
        """``prompts`` with no person in them, in this method's embedding space (see ``render``)."""
        with torch.inference_mode():
            return self.method_impl.neutral_embeds(self.pipe, self.encoder, list(prompts), self.identity_token)

    def negative_embeds(self, negative_prompt: str) -> PromptEmbeds | None:
        """The method's own unconditional branch, or None (the pipeline encodes the negative prompt)."""
        with torch.inference_mode():
            return self.method_impl.negative_embeds(self.pipe, self.encoder, [negative_prompt], self.method_options)

    # ---- generation --------------------------------------------------------------------------
    def check_inputs(self, *, steps: int, guidance: float, height: int, width: int, batch_size: int,
                     scheduler: str, identity_start: float = DEFAULTS["identity_start"]) -> None:
        check_scheduler(scheduler)
        if not 0 <= identity_start <= 1:  # NaN too
            raise InvalidArgumentError(f"--identity-start {identity_start} must be between 0 and 1",
                                       "a fraction of the steps, e.g. 0.2")
        if steps < 1:
            raise InvalidArgumentError(f"--steps {steps} must be at least 1", "the paper uses 30")
        if not 0 <= guidance < float("inf"):  # NaN too
            raise InvalidArgumentError(f"--guidance {guidance} must be a finite number, not negative",
                                       "the paper uses 7.5")
        if batch_size < 1:
            raise InvalidArgumentError(f"--batch-size {batch_size} must be at least 1", "use 1 to 8")
        for name, value in (("height", height), ("width", width)):
            if value < 8 or value % 8:
                raise InvalidArgumentError(f"--{name} {value} must be a positive multiple of 8",
                                           f"e.g. --{name} {max(8, round(value / 8) * 8)}")

    def __call__(
        self, identity: Identity | None, prompt: str, *, seeds: Sequence[int], negative_prompt: str | None = None,
        steps: int = DEFAULTS["steps"], guidance: float = DEFAULTS["guidance"], scheduler: str = DEFAULTS["scheduler"],
        height: int | None = None, width: int | None = None, batch_size: int = DEFAULTS["batch_size"],
        identity_start: float = DEFAULTS["identity_start"], on_step: Callable[[], None] | None = None,
    ) -> list:
        """Render ``prompt`` once per seed (image i uses generator seed ``seeds[i]``); PIL images."""
        seeds = list(seeds)
        images = []
        for start in range(0, len(seeds), batch_size):
            requests = [RenderRequest(identity, prompt, negative_prompt or "", int(seed))
                        for seed in seeds[start:start + batch_size]]
            images += self.render(requests, steps=steps, guidance=guidance, scheduler=scheduler,
                                  height=height, width=width, identity_start=identity_start, on_step=on_step)
        return images

    def render(
        self, requests: Sequence[RenderRequest], *, steps: int = DEFAULTS["steps"],
        guidance: float = DEFAULTS["guidance"], scheduler: str = DEFAULTS["scheduler"], height: int | None = None, width: int | None = None,
        identity_start: float = DEFAULTS["identity_start"], on_step: Callable[[], None] | None = None,
    ) -> list:
        """Render several (identity, prompt, negative prompt, seed) requests in one batch.

        Every request gets its own CPU generator, so its starting noise depends on its seed alone.
        Requests mixing empty and non-empty negative prompts should be rendered apart: SDXL zeroes
        the unconditional embedding only when no negative prompt is given at all.

        ``identity_start``: the share of the steps drawn from the prompt with no person in it
        (``S*`` read as a neutral subject) before the identity's embeddings take over, as
        PhotoMaker's "style strength" delays its ID embedding: the early, high-noise steps lay out
        the picture the prompt asks for, the later ones draw the person into it. 0 (the default)
        conditions every step on the identity, 1 none (the images of ``--method none``).
        """
        height = height or self.default_size
        width = width or self.default_size
        self.check_inputs(steps=steps, guidance=guidance, height=height, width=width,
                          batch_size=max(1, len(requests)), scheduler=scheduler, identity_start=identity_start)
        self._use_scheduler(scheduler)
        identity_condition = None
        if not self.uses_identity:
            condition = {"prompt": [replace_identity(r.prompt, self.identity_token) for r in requests]}
        else:
            condition = _as_condition([self.prompt_embeds(r.identity, r.prompt) for r in requests])
            if round(identity_start * steps) > 0:
                identity_condition = condition
                condition = _as_condition([self.neutral_embeds([r.prompt for r in requests])])
        negatives = [self.negative_embeds(r.negative_prompt) for r in requests] if self.uses_identity else [None]
        if negatives[0] is not None:
            condition.update({"negative_" + k: v for k, v in _as_condition(negatives).items()})
        elif any(r.negative_prompt for r in requests):
            condition["negative_prompt"] = [r.negative_prompt for r in requests]

        def step_callback(pipe, step, timestep, tensors):
            if on_step is not None:
                for _ in requests:
                    on_step()
            # the loop's own length: second-order samplers (heun, dpm++sde) take more model
            # evaluations than --steps; round() so 0.2 of 30 steps is 6
            if identity_condition is not None and step + 1 == max(1, round(identity_start * pipe.num_timesteps)):
                tensors.update(_with_positive(tensors, identity_condition))
            return tensors

        # CPU generators: the same seed gives the same starting noise on every device
        generators = [torch.Generator("cpu").manual_seed(r.seed) for r in requests]
        try:
            with torch.inference_mode():
                output = self.pipe(
                    **condition, num_images_per_prompt=1, generator=generators, num_inference_steps=steps,
                    guidance_scale=guidance, height=height, width=width, callback_on_step_end=step_callback,
                    callback_on_step_end_tensor_inputs=_swapped_tensors(self.pipe) if identity_condition else ["latents"],
                )
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise self._out_of_memory(len(requests), height, width) from exc
        return list(output.images)

    def _out_of_memory(self, count: int, height: int, width: int) -> OutOfMemoryError:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        lower = ["--height/--width"] + (["--batch-size"] if count > 1 else [])
        hint = f"lower {' or '.join(lower)}"
        if self.device.type != "cpu" and self.dtype == torch.float32:
            hint += ", or use --dtype fp16"
        return OutOfMemoryError(f"out of memory rendering {count} image{'s' if count != 1 else ''} of "
                                f"{width}x{height} on {self.device}", hint)

    def _use_scheduler(self, name: str) -> None:
        if name != self._scheduler_name:
            self.pipe.scheduler = make_scheduler(name, self._scheduler_config)
            self._scheduler_name = name

    def describe(self) -> dict:
        return {
            "model": self.model_name, "family": family_of(self.word_dims), "method": self.method,
            **({"method_options": self.method_options} if self.method_options else {}),
            "encoder": self.encoder.name if self.encoder is not None else None,
            "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
        }


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure: torch's (CUDA, MPS) out-of-memory error, Python's
    MemoryError, or the RuntimeError of PyTorch's CPU allocator."""
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def _swapped_tensors(pipe) -> list[str]:
    """The denoising loop's tensors that :func:`_with_positive` replaces (SDXL keeps pooled text apart)."""
    return ["prompt_embeds", "add_text_embeds"] if "add_text_embeds" in pipe._callback_tensor_inputs else ["prompt_embeds"]


def _with_positive(tensors: dict, condition: dict) -> dict:
    """The denoising loop's text tensors with their conditional rows replaced by ``condition``'s.
    Under guidance diffusers stacks them [unconditional; conditional], so the unconditional half
    stays as it was."""
    pairs = [("prompt_embeds", "prompt_embeds"), ("add_text_embeds", "pooled_prompt_embeds")]
    updated = {}
    for loop_name, condition_name in pairs:
        if loop_name not in tensors or condition_name not in condition:
            continue
        current, positive = tensors[loop_name], condition[condition_name].to(tensors[loop_name])
        rows = positive.shape[0]
        updated[loop_name] = positive if current.shape[0] == rows else torch.cat([current[:-rows], positive])
    return updated


def _as_condition(embeds: Sequence[PromptEmbeds]) -> dict:
    """Per-request embeddings as the pipeline's batched ``prompt_embeds`` (and pooled) arguments."""
    condition = {"prompt_embeds": torch.cat([e.prompt_embeds for e in embeds])}
    if embeds[0].pooled_prompt_embeds is not None:
        condition["pooled_prompt_embeds"] = torch.cat([e.pooled_prompt_embeds for e in embeds])
    return condition


def encode_identity(encoder, analyzer, sources: Sequence[str | os.PathLike], *, method: str,
                    face_index: int = 0, max_pixels: int | None = None,
                    timings: dict | None = None) -> Identity:
    """Detect, align and encode each photo into what the method's identities store (photos of one
    person are fused by averaging their features).

    ``timings`` (if given) receives the seconds spent loading, detecting, aligning and encoding.
    """
    from .faces import align_face, select_face
    from .images import file_sha256, load_image

    if not sources:
        raise InvalidArgumentError("no face photo given", "pass at least one photo")
    spent = {"load": 0.0, "detect": 0.0, "align": 0.0, "encoder": 0.0}
    crops, records, embeddings = [], [], []
    for source in sources:
        start = time.perf_counter()
        image = load_image(source, max_pixels=max_pixels)
        spent["load"] += time.perf_counter() - start
        start = time.perf_counter()
        face = select_face(analyzer.detect(image), face_index, str(source))
        spent["detect"] += time.perf_counter() - start
        start = time.perf_counter()
        crop = align_face(image, face.landmarks, encoder.crop_size, encoder.crop_zoom)
        crops.append(encoder.preprocess(crop))
        spent["align"] += time.perf_counter() - start
        records.append({"file": Path(source).name, "sha256": file_sha256(source),
                        "face_index": face_index, "bbox": [round(float(v), 1) for v in face.bbox]})
        if len(sources) > 1:  # for the one-person check below
            embeddings.append(analyzer.embed(image, face))
    if embeddings:
        check_one_person(records, embeddings, analyzer)
    start = time.perf_counter()
    device = next(encoder.parameters()).device
    with torch.inference_mode():
        tensors = get_method(method).identity_tensors(encoder, torch.stack(crops).to(device))
    spent["encoder"] = time.perf_counter() - start
    if timings is not None:
        timings.update(spent)
    metadata = {
        "method": method,
        "encoder_id": encoder.name,
        "encoder_type": encoder.encoder_type,
        "encoder_hash": encoder.content_hash,
        "face_backend": analyzer.name,
        "word_dims": list(encoder.word_dims),
        "sources": records,
        "fusion": "mean of encoder features" if len(records) > 1 else "single photo",
    }
    return Identity(tensors=tensors, metadata=metadata)


def check_one_person(records: list[dict], embeddings: Sequence, analyzer) -> None:
    """The photos fused into one identity should show one person: record each photo's lowest
    similarity to another, and warn, naming the least alike pair, where the backend would call two
    of them different people (fusing them is allowed: it blends the two)."""
    import numpy as np

    from .faces.grouping import least_alike_pair, similarity_matrix

    similarity = similarity_matrix(embeddings)
    np.fill_diagonal(similarity, np.inf)
    for record, row in zip(records, similarity):
        record["lowest_similarity"] = round(float(row.min()), 4)
    first, second, lowest = least_alike_pair(similarity, range(len(records)))
    if lowest < analyzer.same_person_threshold:
        logger.warning("'%s' and '%s' may show different people (similarity %.3f, under the %s backend's "
                       "same-person threshold %.3f); the photos are fused as one person ('faceid compare' on them "
                       "groups them by person)", records[first]["file"],
                       records[second]["file"], lowest, analyzer.name, analyzer.same_person_threshold)


def load_identity_encoder(model: str, encoder_path, method: str, dims: tuple[int, ...] | None = None):
    """The encoder to use with ``model``: a checkpoint, or the tiny models' seeded random one.

    ``dims`` (the model's word widths) is checked when known; ``encode`` does not load the model.
    """
    from .models.tiny import TINY_WORD_DIMS

    if not get_method(method).uses_identity:
        raise InvalidArgumentError(f"method '{method}' uses no identity", "use --method m2")
    ref = resolve_model(model)
    encoder_path = encoder_path if encoder_path is not None else shipped_encoder(ref, method)
    require_encoder(ref, encoder_path)
    if encoder_path is not None:
        encoder_path = get_method(method).locate_encoder(encoder_path)
    if encoder_path is None:
        dims = dims or TINY_WORD_DIMS[ref.location]
    return _load_or_build_encoder(encoder_path, method, dims, ref.location)


def shipped_encoder(ref, method: str) -> Path | None:
    """The encoder faceid ships for ``ref``, used when none is given: the world's trained M²
    encoder for ``--model world`` (made by ``faceid train configs/world.toml``); None elsewhere."""
    if method != "m2" or ref.name != "world":
        return None
    from .world import component_path

    path = component_path("m2-encoder", check=False)
    return path if path.is_dir() else None


def require_encoder(ref, encoder_path) -> None:
    """Real models need a trained encoder; only the tiny ones may use a seeded random one."""
    if encoder_path is None and not ref.is_tiny:
        raise MissingModelError(
            f"no identity encoder given for model '{ref.name}'",
            "pass --encoder CKPT (a checkpoint from 'faceid train'); an untrained encoder gives "
            "meaningless identities (only the tiny models use a seeded random one)",
        )


def _load_or_build_encoder(path, method: str, dims: tuple[int, ...] | None, location: str):
    impl = get_method(method)
    if path is None:
        return impl.random_encoder(location, dims)
    encoder = impl.load_encoder(path)
    impl.check_encoder(encoder, dims, path)
    return encoder


def check_encoder_fits(encoder, method: str, dims: tuple[int, ...] | None, source) -> None:
    """The encoder must be of the method's kind and fit the model's text towers."""
    get_method(method).check_encoder(encoder, dims, source)
