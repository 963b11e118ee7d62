"""The fixed table of pre- and post-processing steps a model card may name.

A card never carries code: its stages list steps of :data:`PRE` (on the model
input, after the window is resampled) and :data:`POST` (on each of the stage's
label masks, back on the source matrix) by name, with parameters. Each entry
says which parameters the step takes and their defaults, so a card with a
misspelt step or parameter is refused when it is loaded, not on the first image.

Post-processing steps get a :class:`PostContext`: the pixel spacing and the
masks already made for the image (a nodule mask is kept inside the gland mask
that another model produced).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scintiseg.models import postprocess
from scintiseg.models.preprocess import Normalisation, normalise


class StepError(ValueError):
    """A step that the table does not know, or a parameter it does not take."""


@dataclass(frozen=True)
class PostContext:
    """What a post-processing step may look at besides its own mask."""

    pixel_spacing_mm: float | None
    #: masks already made for this frame, by label key
    masks: Mapping[str, np.ndarray]


def _mask(ctx: PostContext, label: str) -> np.ndarray:
    if label not in ctx.masks:
        raise StepError(f"label {label!r} is not available to this model")
    return ctx.masks[label]


PreFn = Callable[[np.ndarray, dict[str, Any]], np.ndarray]
PostFn = Callable[[np.ndarray, PostContext, dict[str, Any]], np.ndarray]


def _normalise(x: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    return normalise(x, Normalisation(percentile=float(p["percentile"]), clip=float(p["clip"])))


def _clean_gland(m: np.ndarray, ctx: PostContext, p: dict[str, Any]) -> np.ndarray:
    return postprocess.clean_gland(m, ctx.pixel_spacing_mm, float(p["min_component_mm2"]))


def _clean_nodules(m: np.ndarray, ctx: PostContext, p: dict[str, Any]) -> np.ndarray:
    return postprocess.clean_nodules(m, _mask(ctx, p["within"]), ctx.pixel_spacing_mm, float(p["min_component_mm2"]))


def _remove_small(m: np.ndarray, ctx: PostContext, p: dict[str, Any]) -> np.ndarray:
    return postprocess.remove_small(m, postprocess.min_pixels(ctx.pixel_spacing_mm, float(p["min_component_mm2"])))


def _fill_holes(m: np.ndarray, ctx: PostContext, p: dict[str, Any]) -> np.ndarray:
    return postprocess.fill_holes(m)


def _keep_inside(m: np.ndarray, ctx: PostContext, p: dict[str, Any]) -> np.ndarray:
    return m & _mask(ctx, p["label"]).astype(bool)


@dataclass(frozen=True)
class StepKind:
    """A step of the table: its function, its parameters with defaults (``...``: required),
    and which of its parameters name another label."""

    fn: Callable[..., np.ndarray]
    params: dict[str, Any]
    label_params: tuple[str, ...] = ()


#: Steps on the model input (the window resampled to ``size x size``).
PRE: dict[str, StepKind] = {
    "normalise": StepKind(_normalise, {"percentile": 99.0, "clip": 1.5}),
}

#: Steps on a label mask on the source matrix.
POST: dict[str, StepKind] = {
    "clean_gland": StepKind(_clean_gland, {"min_component_mm2": 20.0}),
    "clean_nodules": StepKind(_clean_nodules, {"min_component_mm2": 10.0, "within": ...}, ("within",)),
    "remove_small": StepKind(_remove_small, {"min_component_mm2": ...}),
    "fill_holes": StepKind(_fill_holes, {}),
    "keep_inside": StepKind(_keep_inside, {"label": ...}, ("label",)),
}


@dataclass(frozen=True)
class Step:
    """A step of a card, bound to its table entry and parameters."""

    name: str
    kind: StepKind = field(repr=False)
    params: dict[str, Any] = field(default_factory=dict, compare=False)

    def label_refs(self) -> list[str]:
        """The other labels this step reads."""
        return [str(self.params[p]) for p in self.kind.label_params]

    def __call__(self, *args: Any) -> np.ndarray:
        return self.kind.fn(*args, self.params)


def parse_steps(raw: Any, table: dict[str, StepKind]) -> tuple[Step, ...]:
    """``[{"step": NAME, PARAM: VALUE, ...}, ...]`` checked against ``table``."""
    if not isinstance(raw, list):
        raise StepError("steps are a list of {\"step\": NAME, ...}")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("step"), str):
            raise StepError(f"a step is {{\"step\": NAME, ...}}, got {item!r}")
        name = item["step"]
        if name not in table:
            raise StepError(f"unknown step {name!r} (known: {', '.join(sorted(table))})")
        kind = table[name]
        given = {k: v for k, v in item.items() if k != "step"}
        unknown = sorted(set(given) - set(kind.params))
        if unknown:
            raise StepError(f"step {name} takes no parameter {', '.join(unknown)}")
        params = {**{k: v for k, v in kind.params.items() if v is not ...}, **given}
        missing = sorted(k for k in kind.params if k not in params)
        if missing:
            raise StepError(f"step {name} needs {', '.join(missing)}")
        for key, value in params.items():
            wanted = str if key in kind.label_params else (int, float)
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise StepError(f"step {name}: {key} has the wrong type ({type(value).__name__})")
        if name == "normalise":
            try:
                Normalisation(percentile=float(params["percentile"]), clip=float(params["clip"]))
            except ValueError as exc:
                raise StepError(f"step normalise: {exc}") from exc
        out.append(Step(name=name, kind=kind, params=params))
    return tuple(out)
