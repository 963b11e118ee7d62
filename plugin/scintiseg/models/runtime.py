"""ONNX Runtime sessions for the models of the registry, and frame segmentation.

A :class:`LoadedModel` is a model card with one session per stage, loaded once
and reused for every frame; :meth:`OnnxModel.load` refuses an ONNX file whose
input or output shape does not match the card. A :class:`Segmenter` runs a
list of loaded models in dependency order (each model's ``needs`` label made
before it) and returns masks keyed by label, not by position. The CUDA
execution provider is used when onnxruntime offers it, the CPU one otherwise;
which one is in use is logged and exposed as :attr:`Segmenter.providers`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import numpy as np

from scintiseg.models.card import ModelCard, Stage
from scintiseg.models.preprocess import Window, full_window, gland_window, logits_to_source, resample_to_window
from scintiseg.models.steps import PostContext

log = logging.getLogger(__name__)

DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
#: The stages of a frame's time that every model shares (``FrameResult.timings_ms`` keys,
#: with ``_ms``); each model adds ``<first label>_inference``.
SHARED_STAGES = ("preprocess", "postprocess")

Timer = Callable[[str], AbstractContextManager[None]]


class InferenceError(RuntimeError):
    """A model could not be loaded or run."""


def choose_providers(requested: Sequence[str] = DEFAULT_PROVIDERS) -> list[str]:
    """The requested execution providers that this onnxruntime build offers, in order.

    The CPU provider is always appended last, so a machine without CUDA still runs.
    """
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen = [p for p in requested if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _shape_error(shape: Sequence[object], want: Sequence[int | None]) -> bool:
    """Whether a session's declared shape contradicts ``want`` (``None``: any; symbolic dims pass)."""
    if len(shape) != len(want):
        return True
    return any(isinstance(d, int) and w is not None and d != w for d, w in zip(shape, want, strict=True))


@dataclass
class OnnxModel:
    """One ONNX Runtime session and the stage of the card it runs."""

    stage: Stage
    session: object
    providers: list[str]
    ident: str = ""

    @classmethod
    def load(
        cls, stage: Stage, channels: int, providers: Sequence[str], threads: int = 0, ident: str = ""
    ) -> OnnxModel:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Sessions run one after the other on the same cores: threads left spinning
        # by one after its run would steal the CPU from the next (measured: the second
        # model ran 2x slower in the pipeline than alone). Idle threads sleep instead.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Flush denormal floats (near-empty count images) to zero: no slow paths.
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        try:
            session = ort.InferenceSession(str(stage.path), sess_options=opts, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InferenceError(f"cannot load {ident} from {stage.path}: {exc}") from exc
        inputs = {i.name: list(i.shape) for i in session.get_inputs()}
        outputs = {o.name: list(o.shape) for o in session.get_outputs()}
        if stage.input_name not in inputs:
            raise InferenceError(f"{ident}: card input '{stage.input_name}' not in model inputs {list(inputs)}")
        if stage.output_name not in outputs:
            raise InferenceError(f"{ident}: card output '{stage.output_name}' not in model outputs {list(outputs)}")
        size = stage.size
        if _shape_error(inputs[stage.input_name], [None, 1, size, size]):
            raise InferenceError(
                f"{ident}: {stage.path.name} input shape {inputs[stage.input_name]} does not match the card "
                f"([N, 1, {size}, {size}])"
            )
        if _shape_error(outputs[stage.output_name], [None, channels, size, size]):
            raise InferenceError(
                f"{ident}: {stage.path.name} output shape {outputs[stage.output_name]} does not match the card "
                f"([N, {channels}, {size}, {size}]: one channel per label)"
            )
        return cls(stage=stage, session=session, providers=list(session.get_providers()), ident=ident)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits ``(N, labels, size, size)`` for inputs ``(N, size, size)``."""
        x = np.ascontiguousarray(batch[:, None, :, :], dtype=np.float32)
        (out,) = self.session.run([self.stage.output_name], {self.stage.input_name: x})  # type: ignore[attr-defined]
        return np.asarray(out, dtype=np.float32)


@dataclass
class LoadedModel:
    """A model card and its stages' sessions."""

    card: ModelCard
    stages: list[OnnxModel]

    @classmethod
    def load(cls, card: ModelCard, providers: Sequence[str], threads: int = 0) -> LoadedModel:
        n = len(card.labels)
        return cls(card, [OnnxModel.load(s, n, providers, threads, card.ident) for s in card.stages])

    @property
    def ident(self) -> str:
        return self.card.ident

    @property
    def providers(self) -> list[str]:
        return self.stages[0].providers

    @property
    def timing_key(self) -> str:
        """``<first label>_inference``: where this model's network time is recorded."""
        return f"{self.card.labels[0].key}_inference"

    def segment(
        self,
        frames: np.ndarray,
        spacing: float | None,
        known: Sequence[Mapping[str, np.ndarray]],
        timed: Timer,
        undecided: list[dict[str, int]] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """This model's label masks for each frame; ``known`` holds the masks made before it.

        ``undecided``, when given (one dict per frame), receives per label the number of
        pixels whose probability the stage that made the mask left between 0.2 and 0.8.
        """
        card = self.card
        shape = (frames.shape[1], frames.shape[2])
        n = frames.shape[0]
        keys = card.label_keys
        results: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
        unsure_by_frame: list[dict[str, int]] = [{} for _ in range(n)]
        for model in self.stages:
            stage = model.stage
            with timed("preprocess"):
                if stage.window == "image":
                    todo = list(range(n))
                    windows = [full_window(shape)] * n
                elif stage.window == "needs":
                    assert card.needs is not None
                    need, margin = card.needs.label, card.needs.margin
                    todo = list(range(n))
                    windows = [gland_window(known[i][need], margin=margin) for i in todo]
                else:  # "previous": where the previous stage found something
                    unions = [_union(results[i].values(), shape) for i in range(n)]
                    todo = [i for i in range(n) if unions[i].any()]
                    windows = [gland_window(unions[i]) for i in todo]
            if not todo:
                continue
            masks, unsures = _run_stage(model, frames[todo], windows, shape, timed, self.timing_key)
            with timed("postprocess"):
                for i, raw, unsure in zip(todo, masks, unsures, strict=True):
                    ctx = PostContext(spacing, {**known[i], **results[i]})
                    made = {}
                    for c, key in enumerate(keys):
                        m = raw[c]
                        for step in stage.post:
                            m = step(m, ctx)
                        made[key] = m
                    counts = {key: int(unsure[c]) for c, key in enumerate(keys)}
                    if stage.window == "previous":
                        # a later pass that finds nothing does not erase the previous pass's result
                        counts = {k: n if made[k].any() else unsure_by_frame[i].get(k, 0) for k, n in counts.items()}
                        made = {k: m if m.any() else results[i][k] for k, m in made.items()}
                    results[i] = made
                    unsure_by_frame[i].update(counts)
        for i in range(n):  # frames no stage could see (empty previous stage) get empty masks
            for key in keys:
                results[i].setdefault(key, np.zeros(shape, dtype=bool))
                unsure_by_frame[i].setdefault(key, 0)
        if undecided is not None:
            for i in range(n):
                undecided[i].update(unsure_by_frame[i])
        return results


def _union(masks: object, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for m in masks:  # type: ignore[attr-defined]
        out |= m
    return out


def stage_input(stage: Stage, image: np.ndarray, window: Window) -> np.ndarray:
    """The ``(size, size)`` model input of ``image`` seen through ``window``: resampled, then the
    stage's pre-processing steps."""
    x = resample_to_window(image, window, stage.size)
    for step in stage.pre:
        x = step(x)
    return x


#: |logit - threshold| below this is "undecided": probability between 0.2 and 0.8 (logit(0.8) = 1.386).
UNDECIDED_LOGIT = 1.386


def _run_stage(
    model: OnnxModel, frames: np.ndarray, windows: list[Window], shape: tuple[int, int], timed: Timer, key: str
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``model`` on each frame seen through its window: ``(labels, rows, cols)`` raw masks per frame,
    and per frame the number of source pixels of each label whose logit is undecided."""
    stage = model.stage
    with timed("preprocess"):
        batch = np.stack([stage_input(stage, f, w) for f, w in zip(frames, windows, strict=True)])
    with timed(key):
        logits = model.run(batch)
    with timed("postprocess"):
        masks, undecided = [], []
        for lg, w in zip(logits, windows, strict=True):
            source = np.stack([logits_to_source(lg[c], w, shape) for c in range(lg.shape[0])]) - stage.threshold
            masks.append(source > 0)
            undecided.append((np.abs(source) < UNDECIDED_LOGIT).sum(axis=(1, 2)))
        return masks, undecided


@dataclass
class FrameResult:
    """Masks on the source matrix for one frame, by label, and where the time went (ms)."""

    masks: dict[str, np.ndarray]
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: per label, pixels whose probability was left between 0.2 and 0.8 (quality flag ``low_confidence``)
    undecided: dict[str, int] = field(default_factory=dict)


def dependency_order(models: Sequence[LoadedModel]) -> list[LoadedModel]:
    """``models`` sorted so that each comes after the model producing the label it needs.

    Raises :class:`ValueError` on a need no model of the list meets, or on a cycle.
    """
    producer = {key: m for m in models for key in m.card.label_keys}
    ordered: list[LoadedModel] = []
    state: dict[str, str] = {}

    def visit(m: LoadedModel) -> None:
        if state.get(m.ident) == "done":
            return
        if state.get(m.ident) == "visiting":
            raise ValueError(f"models need each other in a cycle ({m.ident})")
        state[m.ident] = "visiting"
        if m.card.needs is not None:
            dep = producer.get(m.card.needs.label)
            if dep is None:
                raise ValueError(f"{m.ident} needs label {m.card.needs.label!r}, which no model provides")
            visit(dep)
        state[m.ident] = "done"
        ordered.append(m)

    for m in sorted(models, key=lambda m: m.ident):
        visit(m)
    return ordered


class Segmenter:
    """Segment 2-D scintigraphy frames with models run in dependency order."""

    def __init__(self, models: Sequence[LoadedModel], owners: Mapping[str, str] | None = None) -> None:
        """``owners`` (label -> model identity) says which model's mask counts for a label
        that several of ``models`` make; by default, each model's own labels."""
        if not models:
            raise ValueError("Segmenter needs at least one model")
        self.models = dependency_order(models)
        own = {k: m.ident for m in self.models for k in m.card.label_keys}
        self.owners = dict(owners) if owners is not None else own

    @property
    def providers(self) -> list[str]:
        return self.models[0].providers

    @property
    def model_idents(self) -> list[str]:
        return [m.ident for m in self.models]

    def model(self, label: str) -> LoadedModel:
        """The model that makes ``label``."""
        for m in self.models:
            if label in m.card.label_keys:
                return m
        raise KeyError(label)

    def segment_frame(self, frame: np.ndarray, pixel_spacing_mm: float | None = None) -> FrameResult:
        """Segment one 2-D frame of counts; masks come back on the frame's matrix."""
        return self.segment_frames(frame[None], pixel_spacing_mm)[0]

    def segment_frames(self, frames: np.ndarray, pixel_spacing_mm: float | None = None) -> list[FrameResult]:
        """Segment ``(n, rows, cols)`` frames, batching each model's stages over the frames."""
        if frames.ndim != 3:
            raise ValueError(f"frames must be (n, rows, cols), got shape {frames.shape}")
        n = frames.shape[0]
        spent: dict[str, float] = dict.fromkeys([*SHARED_STAGES, *(m.timing_key for m in self.models)], 0.0)

        @contextmanager
        def timed(stage: str) -> Iterator[None]:
            t = time.perf_counter()
            yield
            spent[stage] += time.perf_counter() - t

        known: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
        unsure: list[dict[str, int]] = [{} for _ in range(n)]
        for model in self.models:
            mine: list[dict[str, int]] = [{} for _ in range(n)]
            made = model.segment(frames, pixel_spacing_mm, known, timed, mine)
            for i in range(n):
                owned = [k for k in made[i] if self.owners.get(k) == model.ident]
                known[i].update({k: made[i][k] for k in owned})
                unsure[i].update({k: mine[i][k] for k in owned})
        timings = {f"{stage}_ms": seconds * 1e3 / n for stage, seconds in spent.items()}
        return [FrameResult(masks=known[i], timings_ms=dict(timings), undecided=unsure[i]) for i in range(n)]
