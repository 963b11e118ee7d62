"""ONNX Runtime sessions for the gland and nodule models, and one-frame segmentation.

Models load once (:meth:`Segmenter.from_models_dir`) and are reused for every
frame. The CUDA execution provider is used when onnxruntime offers it, the CPU
one otherwise; which one is in use is logged and exposed as
:attr:`Segmenter.providers`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import postprocess
from .modelcard import ModelCard, find_cards
from .preprocess import Window, full_window, gland_window, logits_to_source, model_input

log = logging.getLogger(__name__)

DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
#: Where a frame's time goes (``FrameResult.timings_ms`` keys, with ``_ms``).
TIMING_STAGES = ("preprocess", "gland_inference", "nodule_inference", "postprocess")


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


@dataclass
class OnnxModel:
    """One ONNX Runtime session and the card that describes it."""

    card: ModelCard
    session: object
    providers: list[str]

    @classmethod
    def load(cls, card: ModelCard, providers: Sequence[str], threads: int = 0) -> OnnxModel:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Two sessions run one after the other on the same cores: threads left spinning
        # by one after its run would steal the CPU from the next (measured: the second
        # model ran 2x slower in the pipeline than alone). Idle threads sleep instead.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Flush denormal floats (near-empty count images) to zero: no slow paths.
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        try:
            session = ort.InferenceSession(str(card.path), sess_options=opts, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InferenceError(f"cannot load {card.ident} from {card.path}: {exc}") from exc
        names = [i.name for i in session.get_inputs()]
        if card.input_name not in names:
            raise InferenceError(f"{card.ident}: card input '{card.input_name}' not in model inputs {names}")
        return cls(card=card, session=session, providers=list(session.get_providers()))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits ``(N, size, size)`` for inputs ``(N, size, size)``."""
        x = np.ascontiguousarray(batch[:, None, :, :], dtype=np.float32)
        (out,) = self.session.run([self.card.output_name], {self.card.input_name: x})  # type: ignore[attr-defined]
        return np.asarray(out, dtype=np.float32)[:, 0]


@dataclass
class FrameResult:
    """Masks on the source matrix for one frame, and where the time went (ms)."""

    gland: np.ndarray
    nodules: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


class Segmenter:
    """Gland then nodule segmentation of 2-D scintigraphy frames.

    The gland model sees the whole field; if its card has a ``refine`` pass,
    that second network outlines the gland again in the window around the
    first result. The nodule model then sees the window around the gland.
    """

    def __init__(self, gland: OnnxModel, nodule: OnnxModel, gland_refine: OnnxModel | None = None) -> None:
        if gland.card.task != "gland" or nodule.card.task != "nodule":
            raise ValueError("Segmenter needs a gland model and a nodule model")
        if gland_refine is not None and gland_refine.card.window != "gland":
            raise ValueError("the gland refine pass must see the gland window")
        self.gland = gland
        self.nodule = nodule
        self.gland_refine = gland_refine

    @classmethod
    def from_models_dir(
        cls, models_dir: Path, providers: Sequence[str] = DEFAULT_PROVIDERS, threads: int = 0
    ) -> Segmenter:
        cards = find_cards(Path(models_dir))
        chosen = choose_providers(providers)
        refine = cards["gland"].refine
        seg = cls(
            OnnxModel.load(cards["gland"], chosen, threads),
            OnnxModel.load(cards["nodule"], chosen, threads),
            OnnxModel.load(refine, chosen, threads) if refine is not None else None,
        )
        log.info(
            "ScintiSeg models loaded: %s, %s; execution providers in use: %s",
            seg.gland.card.ident,
            seg.nodule.card.ident,
            ", ".join(seg.providers),
        )
        return seg

    @property
    def providers(self) -> list[str]:
        return self.gland.providers

    @property
    def model_idents(self) -> list[str]:
        return [self.gland.card.ident, self.nodule.card.ident]

    def segment_frame(self, frame: np.ndarray, pixel_spacing_mm: float | None = None) -> FrameResult:
        """Segment one 2-D frame of counts; masks come back on the frame's matrix."""
        return self.segment_frames(frame[None], pixel_spacing_mm)[0]

    def segment_frames(self, frames: np.ndarray, pixel_spacing_mm: float | None = None) -> list[FrameResult]:
        """Segment ``(n, rows, cols)`` frames, batching each model over the frames."""
        if frames.ndim != 3:
            raise ValueError(f"frames must be (n, rows, cols), got shape {frames.shape}")
        n = frames.shape[0]
        gcard, ncard = self.gland.card, self.nodule.card
        spent: dict[str, float] = dict.fromkeys(TIMING_STAGES, 0.0)

        @contextmanager
        def timed(stage: str) -> Iterator[None]:
            t = time.perf_counter()
            yield
            spent[stage] += time.perf_counter() - t

        with timed("preprocess"):
            windows = [full_window((frames.shape[1], frames.shape[2]))] * n
        raw = self._pass(self.gland, frames, windows, timed, "gland_inference")
        with timed("postprocess"):
            glands = [postprocess.clean_gland(m, pixel_spacing_mm, gcard.min_component_mm2) for m in raw]
        # the second pass, on the frames where the first found a gland
        found = [i for i, g in enumerate(glands) if g.any()]
        if self.gland_refine is not None and found:
            with timed("preprocess"):
                windows = [gland_window(glands[i]) for i in found]
            raw = self._pass(self.gland_refine, frames[found], windows, timed, "gland_inference")
            with timed("postprocess"):
                for i, m in zip(found, raw, strict=True):
                    refined = postprocess.clean_gland(m, pixel_spacing_mm, gcard.min_component_mm2)
                    # a second pass that finds nothing does not erase the first pass's gland
                    if refined.any():
                        glands[i] = refined
        with timed("preprocess"):
            windows = [gland_window(g) for g in glands]
        raw = self._pass(self.nodule, frames, windows, timed, "nodule_inference")
        with timed("postprocess"):
            results = [
                FrameResult(gland=g, nodules=postprocess.clean_nodules(m, g, pixel_spacing_mm, ncard.min_component_mm2))
                for g, m in zip(glands, raw, strict=True)
            ]
        timings = {f"{stage}_ms": seconds * 1e3 / n for stage, seconds in spent.items()}
        for r in results:
            r.timings_ms = dict(timings)
        return results

    @staticmethod
    def _pass(
        model: OnnxModel,
        frames: np.ndarray,
        windows: list[Window],
        timed: Callable[[str], AbstractContextManager[None]],
        stage: str,
    ) -> list[np.ndarray]:
        """``model`` run on each frame seen through its window: raw masks on the source matrix."""
        card = model.card
        shape = (frames.shape[1], frames.shape[2])
        with timed("preprocess"):
            batch = np.stack(
                [model_input(f, w, card.size, card.normalisation) for f, w in zip(frames, windows, strict=True)]
            )
        with timed(stage):
            logits = model.run(batch)
        with timed("postprocess"):
            return [logits_to_source(lg, w, shape) > card.threshold for lg, w in zip(logits, windows, strict=True)]
