"""Tiny stand-in models for tests that need *a* model, not a good one.

:func:`write_fake_models` writes ``gland/`` and ``nodule/`` folders, each with a
``model.onnx`` built with the ``onnx`` helper API and a schema-2 ``card.json``
that :func:`scintiseg.models.card.load_card` accepts (sha256 included);
:func:`write_fake_model` writes one folder (variants, third labels, broken ones). The graph is
one affine map of the normalised input, ``logits = scale * (image - offset)``
on ``image`` ``[N, 1, 128, 128]``: the gland model thresholds bright pixels,
the nodule model dark ones (cold nodules inside the gland). Loading takes
milliseconds, so tests exercise the real plugin without the trained models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scintiseg.models.card import CARD_FILE, load_card, sha256_file, task_card

SIZE = 128
FAKE_VERSION = "0.0.0-test"

#: (scale, offset) of ``logits = scale * (image - offset)``; a negative scale picks dark pixels.
AFFINE = {"gland": (40.0, 0.35), "nodule": (-40.0, 0.2)}


def affine_onnx(
    scale: float, offset: float, size: int = SIZE, channels: int = 1, fixed_batch: int | None = None
) -> bytes:
    """``logits = scale * (image - offset)`` as an ONNX model (opset 17, dynamic batch).

    ``channels`` > 1 repeats the map on that many output channels (one per label).
    ``fixed_batch``: the graph reshapes to that batch size, so onnxruntime fails at run
    time (a Reshape error) on any other batch, e.g. an image with more frames.
    """
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, size, size])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", channels, size, size])
    off = helper.make_tensor("offset", TensorProto.FLOAT, [], [offset])
    sc = helper.make_tensor("scale", TensorProto.FLOAT, [], [scale])
    nodes = [
        helper.make_node("Sub", ["image", "offset"], ["centred"]),
        helper.make_node("Mul", ["centred", "scale"], ["one"]),
    ]
    initializers = [off, sc]
    last = "one"
    if channels > 1:
        nodes.append(helper.make_node("Concat", ["one"] * channels, ["stacked"], axis=1))
        last = "stacked"
    if fixed_batch is not None:
        initializers.append(helper.make_tensor("shape", TensorProto.INT64, [4], [fixed_batch, channels, size, size]))
        nodes.append(helper.make_node("Reshape", [last, "shape"], ["reshaped"]))
        last = "reshaped"
    nodes.append(helper.make_node("Identity", [last], ["logits"]))
    graph = helper.make_graph(nodes, "scintiseg-fake", [image], [logits], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime >= 1.10
    onnx.checker.check_model(model)
    return model.SerializeToString()


def fake_card(task: str, sha256: str, version: str = FAKE_VERSION, **extra: Any) -> dict[str, Any]:
    """A stand-in's card: the shipped kinds' rule, but no outline limits (an affine map's
    outline says nothing of an organ) unless ``outline`` is given."""
    extra.setdefault("outline", {})
    return task_card(
        task,
        name=extra.pop("name", f"scintiseg-{task}"),
        version=version,
        stages=[{"onnx": "model.onnx", "sha256": sha256}],
        size=SIZE,
        min_component_mm2=20.0 if task == "gland" else 10.0,
        family="affine (test stand-in)",
        creator="ScintiSeg tests",
        training={"data": "none: a fixed affine map for tests"},
        metrics={},
        **extra,
    )


def write_fake_model(
    folder: Path,
    task: str,
    version: str = FAKE_VERSION,
    affine: tuple[float, float] | None = None,
    refine: tuple[float, float] | None = None,
    fixed_batch: int | None = None,
    **card_changes: Any,
) -> Path:
    """One stand-in model folder (``task`` gland or nodule); ``card_changes`` replace card keys."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "model.onnx"
    channels = len(card_changes.get("labels") or [None])
    onnx_path.write_bytes(affine_onnx(*(affine or AFFINE[task]), channels=channels, fixed_batch=fixed_batch))
    card = fake_card(task, sha256_file(onnx_path), version)
    if refine is not None:
        refine_path = folder / "refine.onnx"
        refine_path.write_bytes(affine_onnx(*refine))
        second = dict(card["stages"][0], onnx="refine.onnx", sha256=sha256_file(refine_path), window="previous")
        card["stages"].append(second)
    card.update(card_changes)
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return folder


def write_fake_models(
    models_dir: Path,
    version: str = FAKE_VERSION,
    refine: tuple[float, float] | None = None,
    fixed_batch: int | None = None,
) -> Path:
    """Write the two fake models under ``models_dir`` and check they load; returns it.

    ``refine`` = ``(scale, offset)`` gives the gland model a second pass (``refine.onnx``,
    the same affine map on the window of the first pass's gland). ``fixed_batch``: the
    gland model fails in onnxruntime on another batch size (see :func:`affine_onnx`).
    """
    models_dir = Path(models_dir)
    for task in AFFINE:
        write_fake_model(models_dir / task, task, version, refine=refine if task == "gland" else None,
                         fixed_batch=fixed_batch if task == "gland" else None)
    for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        load_card(folder)  # the same validation as the plugin's
    return models_dir
