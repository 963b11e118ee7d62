"""ONNX Runtime sessions for the gland and nodule models, and one-frame segmentation.

Models load once (:meth:`Segmenter.from_models_dir`) and are reused for every
frame. The CUDA execution provider is used when onnxruntime offers it, the CPU
one otherwise; which one is in use is logged and exposed as
:attr:`Segmenter.providers`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import postprocess
from .modelcard import ModelCard, find_cards
from .preprocess import full_window, gland_window, logits_to_source, model_input

log = logging.getLogger(__name__)

DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


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
        n, rows, cols = frames.shape
        shape = (rows, cols)
        gcard, ncard = self.gland.card, self.nodule.card
        t0 = time.perf_counter()
        gwin = full_window(shape)
        gin = np.stack([model_input(f, gwin, gcard.size, gcard.normalisation) for f in frames])
        t1 = time.perf_counter()
        glogits = self.gland.run(gin)
        t2 = time.perf_counter()
        glands = [
            postprocess.clean_gland(
                logits_to_source(g, gwin, shape) > gcard.threshold, pixel_spacing_mm, gcard.min_component_mm2
            )
            for g in glogits
        ]
        t3 = time.perf_counter()
        refine_pre, refine_run = 0.0, 0.0
        if self.gland_refine is not None:
            glands, refine_pre, refine_run = self._refine(frames, glands, pixel_spacing_mm)
        t3b = time.perf_counter()
        nwins = [gland_window(g) for g in glands]
        nin = np.stack(
            [model_input(f, w, ncard.size, ncard.normalisation) for f, w in zip(frames, nwins, strict=True)]
        )
        t4 = time.perf_counter()
        nlogits = self.nodule.run(nin)
        t5 = time.perf_counter()
        results = []
        for g, w, lg in zip(glands, nwins, nlogits, strict=True):
            raw = logits_to_source(lg, w, shape) > ncard.threshold
            nod = postprocess.clean_nodules(raw, g, pixel_spacing_mm, ncard.min_component_mm2)
            results.append(FrameResult(gland=g, nodules=nod))
        t6 = time.perf_counter()
        refine_post = (t3b - t3) - refine_pre - refine_run
        timings = {
            "preprocess_ms": ((t1 - t0) + (t4 - t3b) + refine_pre) * 1e3 / n,
            "gland_inference_ms": ((t2 - t1) + refine_run) * 1e3 / n,
            "nodule_inference_ms": (t5 - t4) * 1e3 / n,
            "postprocess_ms": ((t3 - t2) + (t6 - t5) + refine_post) * 1e3 / n,
        }
        for r in results:
            r.timings_ms = dict(timings)
        return results

    def _refine(
        self, frames: np.ndarray, glands: list[np.ndarray], pixel_spacing_mm: float | None
    ) -> tuple[list[np.ndarray], float, float]:
        """The gland outlined again in the window around the first pass (frames with a gland only).

        Where the second pass finds no gland at all, the first pass's mask stays.

        Returns the new masks and the seconds spent preparing inputs and running the model.
        """
        assert self.gland_refine is not None
        rcard, gcard = self.gland_refine.card, self.gland.card
        shape = (frames.shape[1], frames.shape[2])
        found = [i for i, g in enumerate(glands) if g.any()]
        if not found:
            return glands, 0.0, 0.0
        t0 = time.perf_counter()
        wins = {i: gland_window(glands[i]) for i in found}
        rin = np.stack([model_input(frames[i], wins[i], rcard.size, rcard.normalisation) for i in found])
        t1 = time.perf_counter()
        logits = self.gland_refine.run(rin)
        t2 = time.perf_counter()
        out = list(glands)
        for i, lg in zip(found, logits, strict=True):
            raw = logits_to_source(lg, wins[i], shape) > rcard.threshold
            refined = postprocess.clean_gland(raw, pixel_spacing_mm, gcard.min_component_mm2)
            # a second pass that finds nothing does not erase the first pass's gland
            if refined.any():
                out[i] = refined
        return out, t1 - t0, t2 - t1
