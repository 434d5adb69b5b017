"""The lean runtime: EEG -> encoder -> prior (N steps) -> UNet (1 or 4 steps) -> decoder -> uint8 images.

The prior runs either fused (one ``prior_sampler`` graph holding all N DDPM steps, where the folder has
one for N) or stepwise (the numpy samplers calling the ``prior`` graph once per step; any sampler, any N).

Imports numpy and one backend only: no torch, no diffusers, no onnx. Everything besides the graphs
(empty-prompt conditioning, scheduler tables) comes from the bundle's constants, and every random
number from :class:`~.noise.NoiseSource` in the reference's order, so a seed gives the reference's image.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..checks import check_finite
from ..core.images import to_uint8
from ..core.noise import NoiseSource
from ..core.options import RunOptions
from ..core.schedulers import EulerAncestral
from ..eeg.spec import validate_eeg, validate_subject_ids
from ..eeg.whitening import apply_whitening
from ..errors import ManifestError, OptionError, SettingsError
from ..manifest import Backend, Constants, Decoder, Manifest, Precision, Provider, Stage
from .backend import StageSession
from .low_level import LowLevelPath, cut_for
from .opening import FUSED_PRIOR, OpenOptions, _enum, check_subjects, choose_whitening, read_folder, stages_to_open
from .prior_solvers import get_prior_sampler
from .semantic import Semantic

log = logging.getLogger(__name__)


@dataclass
class Result:
    images: np.ndarray  # (B, H, W, 3) uint8
    eeg_embeds: np.ndarray  # (B, 1024)
    image_embeds: np.ndarray  # (B, 1024)
    latents: np.ndarray  # (B, 4, H/8, W/8)
    low_level_latents: np.ndarray | None = None  # (B, 4, H/8, W/8) the low-level encoder's output
    timings_ms: dict[str, float] = field(default_factory=dict)  # wall time per stage + total
    backend_ms: float = 0.0  # time inside backend calls; total - backend_ms is the runtime's overhead
    prior_graph: str = "stepwise"  # how the prior ran: "fused" or "stepwise"
    captions: list[str] | None = None  # with options asking for captions
    caption_ids: list[list[int]] | None = None
    options: RunOptions | None = None  # the options the call ran with, the bundle's values filled in


class _Chunk(NamedTuple):
    """What one chunk of a call gives its :class:`Result` (on the host)."""

    images: np.ndarray
    eeg_embeds: np.ndarray
    image_embeds: np.ndarray
    latents: np.ndarray
    low_level_latents: np.ndarray
    caption_ids: list[list[int]]


class _Timed:
    """A stage session that adds the wall time of each call to a shared counter."""

    def __init__(self, session: StageSession, counter: list[float]):
        self.session = session
        self.counter = counter

    def __call__(self, feeds: dict[str, Any], **kw: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = self.session.run(feeds, **kw)
        self.counter[0] += (time.perf_counter() - t0) * 1e3
        return out


class Pipeline:
    def __init__(self, manifest: Manifest, constants: dict[str, np.ndarray], sessions: dict[str, StageSession],
                 *, folder: Path, vae: Decoder | str, stream: Any = None,
                 whitening: np.ndarray | str | Path | None = None):
        self.manifest = manifest
        self._stream = stream  # the CUDA stream the TensorRT stages share (closed last)
        self.constants = constants
        self.sessions = sessions
        self.folder = folder
        self.vae = Decoder(vae)
        self.max_batch = manifest.bundle.max_batch
        self.num_subjects = manifest.bundle.num_subjects
        self.image_size = manifest.bundle.image_size
        self.eeg_spec = manifest.eeg.spec()
        self.fused_prior_steps = sorted((s.artifact.steps for s in sessions.values()
                                         if s.artifact.stage == FUSED_PRIOR and s.artifact.steps is not None), reverse=True)
        self.whitening = choose_whitening(constants.get(Constants.EEG_WHITENING), whitening, self.eeg_spec)
        self._backend_ms = [0.0]
        self._run = {name: _Timed(s, self._backend_ms) for name, s in sessions.items()}
        self.low_level = LowLevelPath.open(
            self._call, constants, int(sessions[Stage.LOW_LEVEL_ENCODER].outputs[0].shape[-1]), self.image_size,
            ll.latent_convention if (ll := manifest.bundle.low_level) else "unscaled",
        ) if Stage.LOW_LEVEL_ENCODER in sessions else None  # fmt: skip
        self._open_options: OpenOptions | None = None  # from_bundle's backend choices, for stages opened later
        self._extra_streams: list[Any] = []
        self.semantic = Semantic(self)  # captions and prompts: their stages open on first use

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        *,
        backend: Backend | str = Backend.ONNXRUNTIME,
        precision: str | Precision | None = None,
        provider: Provider | str = Provider.CPU,
        vae: Decoder | str = Decoder.FULL,
        allow_cpu_fallback: bool = False,
        threads: int | None = None,
        low_level: bool = False,
        whitening: np.ndarray | str | Path | None = None,
        verify: bool = False,
    ) -> Pipeline:
        """Open an export bundle or an engine folder with ``backend`` (onnxruntime on ``provider``, or TensorRT).

        ``precision`` None: per stage, fp16 on a GPU where the folder has it, else fp32 (see :mod:`.sessions`).
        ``provider``: onnxruntime's execution provider (``--provider``); ``threads``: onnxruntime intra-op
        threads per session (default: one per core).
        ``low_level``: also open the low-level path's stages (:mod:`.low_level`).
        ``whitening``: a (63, 63) matrix (or .npy) for bundles that ship none; with one that does, it is refused.
        ``verify``: hash every file again instead of trusting the folder's record (``--verify``, :mod:`..integrity`).
        """
        from safetensors.numpy import load_file

        options = OpenOptions.check(backend, precision, provider, allow_cpu_fallback, threads, verify)
        decoder = _enum(Decoder, vae, "--vae")
        folder = Path(path)
        manifest = read_folder(folder, options.backend)
        sessions, stream = options.open(folder, manifest, stages_to_open(folder, manifest, decoder, low_level))
        constants = load_file(str(folder / manifest.constants_file))
        pipe = cls(manifest, constants, sessions, folder=folder, vae=decoder, stream=stream, whitening=whitening)
        pipe._open_options = options
        return pipe

    @property
    def precisions(self) -> dict[str, str]:
        """The precision each open stage runs in (``precision`` None chooses per stage)."""
        return {name: s.artifact.precision.value for name, s in self.sessions.items()}

    def open_stage(self, stage: str) -> None:
        """Open one more stage of the folder (hash checked) with from_bundle's backend choices."""
        if stage in self.sessions:
            return
        if self._open_options is None:
            raise SettingsError(f"stage {stage!r} is not open: this pipeline was not opened with Pipeline.from_bundle")
        sessions, stream = self._open_options.open(self.folder, self.manifest, [stage])
        if stream is not None:
            self._extra_streams.append(stream)
        self.sessions.update(sessions)
        self._run[stage] = _Timed(sessions[stage], self._backend_ms)

    def run_stage(self, stage: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of one call, by name (feeds cast to the stage's input dtypes)."""
        return self._run[stage](self._cast(stage, feeds))

    # ---- helpers ----------------------------------------------------------------------------------
    def _cast(self, stage: str, feeds: dict[str, Any]) -> dict[str, Any]:
        """Host arrays in the stage's dtypes; device tensors (another stage's output) pass as they are."""
        return {t.name: np.ascontiguousarray(v, dtype=t.dtype) if isinstance(v := feeds[t.name], np.ndarray) else v
                for t in self.sessions[stage].inputs if t.name in feeds}  # fmt: skip

    def _call(self, stage: str, feeds: dict[str, Any], *, keep: bool = False) -> Any:
        """Run ``stage``; its output as float32/uint8 numpy, or with ``keep`` left on the device (a backend
        handle for the next stage of the same backend) where the stage runs on one."""
        session = self.sessions[stage]
        kw = {"keep_on_device": (session.outputs[0].name,)} if keep and session.on_device else {}
        out = next(iter(self._run[stage](self._cast(stage, feeds), **kw).values()))
        if not isinstance(out, np.ndarray):
            return out
        return out if out.dtype == np.uint8 else out.astype(np.float32, copy=False)

    def _host(self, stage: str, value: Any) -> np.ndarray:
        """``value`` (an output of ``stage``) on the host as float32."""
        if isinstance(value, np.ndarray):
            return value
        return self.sessions[stage].to_host(value).astype(np.float32, copy=False)

    def _chains(self, producer: str, consumer: str, name: str) -> bool:
        """Whether ``producer``'s output can feed ``consumer``'s input ``name`` on the device as it is."""
        a, b = self.sessions[producer], self.sessions[consumer]
        want = next((t.dtype for t in b.inputs if t.name == name), None)
        return a.on_device and b.on_device and a.outputs[0].dtype == want

    def _euler(self, steps: int) -> EulerAncestral:
        return EulerAncestral.from_constants(self.constants, steps, exported=self.manifest.bundle.steps)

    def check_subjects(self, ids: np.ndarray, shared_subject_token: bool) -> None:
        check_subjects(ids, self.manifest.bundle, shared_subject_token)

    def _trials(self, eeg: np.ndarray, subject_ids: int | np.ndarray,
                shared_subject_token: bool) -> tuple[np.ndarray, np.ndarray]:
        """The EEG checked against the bundle's spec and whitened, and one subject id per trial: the input checks
        of :meth:`__call__` and :meth:`embed` (one path, so both refuse a bad input with the same error)."""
        eeg = validate_eeg(eeg, self.eeg_spec)
        ids = validate_subject_ids(subject_ids, len(eeg))
        self.check_subjects(ids, shared_subject_token)
        if self.whitening is not None:
            eeg = apply_whitening(eeg, self.whitening, self.eeg_spec)
        return eeg, ids

    # ---- stages ------------------------------------------------------------------------------------
    def encode(self, eeg: np.ndarray, ids: np.ndarray, *, keep: bool = False) -> Any:
        return self._call("encoder", {"eeg": eeg, "subject_ids": ids}, keep=keep)

    def embed(self, eeg: np.ndarray, subject_ids: int | np.ndarray, *, shared_subject_token: bool = False) -> np.ndarray:
        """The encoder's embeddings (N, 1024) alone, the EEG checked and whitened as :meth:`__call__` does
        (``eval --retrieval``: no prior, no image)."""
        eeg, ids = self._trials(eeg, subject_ids, shared_subject_token)
        emb = np.concatenate([self._host("encoder", self.encode(eeg[i:i + self.max_batch], ids[i:i + self.max_batch]))
                              for i in range(0, len(eeg), self.max_batch)])
        check_finite(Stage.ENCODER, emb)
        return emb

    def prior_graph(self, graph: str | None, sampler: str, steps: int) -> str:
        """Which prior graph a call uses: ``graph`` as asked, or (None) fused where the folder has DDPM at ``steps``."""
        fused = sampler == "ddpm" and steps in self.fused_prior_steps
        if graph == "fused" and sampler != "ddpm":
            raise OptionError(f"the fused prior graph runs DDPM only, not {sampler!r}: use --prior-graph stepwise")
        if graph == "fused" and not fused:
            have = ", ".join(map(str, self.fused_prior_steps)) or "no step count"
            raise ManifestError(
                f"{self.folder} has fused prior graphs for {have}, not {steps} steps: use --prior-graph stepwise, or "
                f"export with --fused-prior-steps {steps} (and build the engines again)"
            )
        return graph or ("fused" if fused else "stepwise")

    def prior(self, eeg_embeds: Any, seed: int | np.ndarray, first: int | np.ndarray, *, steps: int,
              guidance: float, sampler: str, purpose: str = "prior", graph: str | None = None, keep: bool = False) -> Any:
        """``eeg_embeds`` may be the encoder's output left on the device (fused graph only); ``keep``: leave the
        fused graph's output there too."""
        b, dims = _shape(eeg_embeds)[0], _shape(eeg_embeds)[1:]
        noise = NoiseSource(seed, b, purpose, first=first)
        if self.prior_graph(graph, sampler, steps) == "fused":
            # x_T and the variance draws, in the stepwise sampler's order (NoiseSource's contract)
            draws = np.stack([noise.normal(dims) for _ in range(steps)], axis=1)
            guide = np.full(b, guidance, np.float32)
            return self._call(f"{FUSED_PRIOR}@{steps}", {"cond": eeg_embeds, "noise": draws, "guidance": guide}, keep=keep)

        def eps_fn(x, t, cond, mask):
            return self._call("prior", {"x": x, "t": t, "cond": cond, "cond_mask": mask})

        sample = get_prior_sampler(sampler)
        alphas = self.constants[Constants.PRIOR_ALPHAS_CUMPROD]
        return sample(eps_fn, eeg_embeds, noise, alphas, steps=steps, guidance=guidance)

    def denoise(self, image_embeds: np.ndarray, seed: int | np.ndarray, first: int | np.ndarray, *, steps: int,
                ip_scale: float, start: tuple[np.ndarray, NoiseSource, int] | None = None,
                text: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """``start``: img2img (the low-level path) from these latents with this noise, from step index ``[2]`` on.
        ``text``: per-sample (prompt_embeds, pooled) of a prompt; None: the bundle's empty-prompt constants.
        ``image_embeds`` may be the fused prior's output left on the device."""
        b = _shape(image_embeds)[0]
        euler = self._euler(steps)
        if start is None:
            noise = NoiseSource(seed, b, "image", first=first)
            side = self.image_size // 8
            latents = euler.initial_latents(noise, (self.manifest.bundle.latent_channels, side, side))
        else:
            latents, noise, cut = start
            euler = euler.cut(cut)
        fixed = {
            "encoder_hidden_states": text[0] if text else np.repeat(self.constants[Constants.PROMPT_EMBEDS], b, axis=0),
            "text_embeds": text[1] if text else np.repeat(self.constants[Constants.POOLED_PROMPT_EMBEDS], b, axis=0),
            "time_ids": np.repeat(self.constants[Constants.TIME_IDS], b, axis=0),
            "image_embeds": image_embeds,
            "ip_scale": np.full(b, ip_scale, np.float32),
        }
        unet = self.sessions["unet"]
        if unet.on_device:  # the fixed inputs go to the device once per chunk
            for name, value in self._cast("unet", fixed).items():
                unet.set_resident(name, value)
            fixed = {}
        for i, t in enumerate(euler.timesteps):
            feeds = {**fixed, "sample": euler.scale_input(latents, i), "timestep": np.full(b, t, np.float32)}
            latents = euler.step(self._call("unet", feeds), i, latents, noise)
        return latents

    def decode(self, latents: np.ndarray) -> np.ndarray:
        images = self._call(self.vae.stage, {"latents": latents})
        # The decoder graphs emit uint8 NHWC; bundles exported before that emit [-1, 1] floats.
        if images.dtype == np.uint8:
            return images
        check_finite(self.vae.stage, images)
        return to_uint8(images)

    # ---- the whole chain -----------------------------------------------------------------------------
    def options(self, options: RunOptions | None = None, **knobs: Any) -> RunOptions:
        """``options`` (default: :class:`RunOptions`' defaults) with ``knobs`` changed, the bundle's values filled in."""
        return RunOptions.make(options, **knobs).resolve(self.manifest.bundle)

    def __call__(self, eeg: np.ndarray, subject_ids: int | np.ndarray, seed: int | np.ndarray | None = None,
                 options: RunOptions | None = None, *, sample_indices: np.ndarray | None = None, **knobs: Any) -> Result:
        """Reconstruct images from ``eeg`` (N, 63, 250) or one trial (63, 250) with ``options``
        (:class:`~..core.options.RunOptions`; ``knobs``: any of its fields, changed for this call).

        Trial i draws its noise from (seed, i): ``seed`` (default ``options.seed``) may also be one seed per
        trial and ``sample_indices`` replaces i (a server batching unrelated requests keeps each request's
        own seeds and indices, so batching never changes an image).
        """
        if seed is not None and not np.ndim(seed):  # one seed: an option like the others, checked with them
            knobs["seed"], seed = seed, None
        run = self.options(options, **knobs)
        eeg, ids = self._trials(eeg, subject_ids, run.shared_subject_token)
        seeds = _per_trial(run.seed if seed is None else seed, len(eeg), "seed")
        indices = np.arange(len(eeg)) if sample_indices is None else _per_trial(sample_indices, len(eeg), "sample index")
        graph = self.prior_graph(run.prior_graph, run.prior_sampler, run.resolved().prior_steps)
        self._euler(run.resolved().steps)
        cut = cut_for(self.low_level, run)
        self.semantic.prepare(run)
        timings = dict.fromkeys(("encoder", "prior", *(("low_level",) if run.low_level else ()), "unet", "decoder"), 0.0)
        self._backend_ms[0] = 0.0
        t_start = time.perf_counter()
        chunks = [self._chunk(run, graph, cut, eeg[sl], ids[sl], seeds[sl], indices[sl], timings)
                  for sl in (slice(i, i + self.max_batch) for i in range(0, len(eeg), self.max_batch))]
        timings["total"] = (time.perf_counter() - t_start) * 1e3
        images, emb, img_emb, latents, z = (np.concatenate(x) for x in zip(*(c[:5] for c in chunks)))
        caption_ids = [ids_ for c in chunks for ids_ in c.caption_ids] if run.needs_caption else None
        return Result(images, emb, img_emb, latents, z if run.low_level else None, timings,
                      backend_ms=self._backend_ms[0], prior_graph=graph, options=run, caption_ids=caption_ids,
                      captions=self.semantic.decode(caption_ids) if caption_ids is not None else None)

    def _chunk(self, run: RunOptions, graph: str, cut: tuple[LowLevelPath, int] | None, eeg: np.ndarray, ids: np.ndarray,
               seeds: np.ndarray, indices: np.ndarray, timings: dict[str, float]) -> _Chunk:
        """One chunk within the engines' batch profile through the chain: (images, embeddings, latents, low-level
        latents, caption ids). On a GPU the embeddings stay on the device between stages that take them as they
        are (checked for finite values once downloaded); the semantic level reads them on the host."""
        r = run.resolved()
        fused = f"{FUSED_PRIOR}@{r.prior_steps}"
        on_device = graph == "fused" and not (run.needs_caption or run.needs_text)
        keep_emb = on_device and self._chains(Stage.ENCODER, fused, "cond")
        keep_img = on_device and self._chains(fused, Stage.UNET, "image_embeds")
        marks = [time.perf_counter()]
        emb = self.encode(eeg, ids, keep=keep_emb)
        if not keep_emb:
            check_finite(Stage.ENCODER, emb)
        marks.append(time.perf_counter())
        img_emb = self.prior(emb, seeds, indices, steps=r.prior_steps, guidance=r.guidance,
                             sampler=run.prior_sampler, graph=graph, keep=keep_img)
        if not keep_img:
            check_finite(Stage.PRIOR, img_emb)
        marks.append(time.perf_counter())
        caption_ids, text = self.semantic.run(run, emb, seeds, indices, timings)  # timed there
        shift = time.perf_counter() - marks[-1]
        marks = [m + shift for m in marks]  # keeps the stages' spans; the next one starts after the semantic work
        start, z = None, np.zeros((len(eeg), 0), np.float32)
        if cut is not None:
            low_level, at = cut
            noise = NoiseSource(seeds, len(eeg), "low_level", first=indices)
            z = low_level.encode(eeg)
            start = (low_level.start_latents(z, noise, run.low_level_mode), noise, at)
            marks.append(time.perf_counter())
        latents = self.denoise(img_emb, seeds, indices, steps=r.steps, ip_scale=r.ip_scale, start=start, text=text)
        check_finite(Stage.UNET, latents)
        marks.append(time.perf_counter())
        images = self.decode(latents)
        marks.append(time.perf_counter())
        for k, a, b in zip(timings, marks, marks[1:]):
            timings[k] += (b - a) * 1e3
        emb, img_emb = self._host(Stage.ENCODER, emb), self._host(fused, img_emb)  # for the Result
        if keep_emb or keep_img:
            check_finite(Stage.ENCODER, emb)
            check_finite(Stage.PRIOR, img_emb)
        return _Chunk(images, emb, img_emb, latents, z, caption_ids or [])

    def close(self) -> None:
        for s in self.sessions.values():
            s.close()
        for stream in [*self._extra_streams, *([self._stream] if self._stream is not None else [])]:
            stream.close()
        self._stream, self._extra_streams = None, []


def _shape(x: Any) -> tuple[int, ...]:
    """The shape of a numpy array, a DeviceTensor or an onnxruntime OrtValue (whose ``shape`` is a method)."""
    shape = x.shape
    return tuple(shape() if callable(shape) else shape)


def _per_trial(value, n: int, what: str) -> np.ndarray:
    """One non-negative integer per trial (a scalar is broadcast)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or arr.ndim > 1 or (arr.ndim == 1 and len(arr) != n):
        raise OptionError(f"{what} must be one integer or one per trial ({n}); got {value!r}")
    if (arr < 0).any():
        raise OptionError(f"{what} must be >= 0; got {int(arr.min())}")
    return np.broadcast_to(arr.astype(np.int64), (n,))
