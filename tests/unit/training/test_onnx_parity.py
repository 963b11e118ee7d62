"""The exported ONNX graph computes what the PyTorch model computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from support import ROOT

from scintiseg.models.preprocess import full_window, gland_window, model_input
from scintiseg_phantoms.thyroid import generate_scan
from scintiseg_training.dataset import NORMALISATION, SIZE
from scintiseg_training.export import to_onnx_bytes
from scintiseg_training.unet import UNet, UNetConfig, freeze_batchnorm, load_onnx_weights

SHIPPED = sorted((ROOT / "models").rglob("*.onnx"))


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.manual_seed(0)
    m = UNet(UNetConfig(base=4, depth=4))
    # Non-trivial BatchNorm statistics, so that folding them at export is exercised.
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def test_onnx_matches_torch_for_any_batch(model: UNet) -> None:
    data = to_onnx_bytes(model)
    proto = onnx.load_from_string(data)
    assert proto.opset_import[0].version == 17
    (inp,) = proto.graph.input
    assert inp.name == "image"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, 128, 128]
    assert [o.name for o in proto.graph.output] == ["logits"]

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for n in (1, 3):
        x = rng.uniform(0.0, 1.5, (n, 1, 128, 128)).astype(np.float32)
        (got,) = sess.run(["logits"], {"image": x})
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert got.shape == (n, 1, 128, 128)
        assert float(np.abs(got - ref).max()) < 1e-4


def test_exported_model_loads_back_for_fine_tuning(model: UNet, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(to_onnx_bytes(model))
    torch.manual_seed(5)
    fresh = UNet(UNetConfig(base=4, depth=4))
    load_onnx_weights(fresh, str(path))
    fresh.eval()
    x = torch.from_numpy(np.random.default_rng(2).uniform(0.0, 1.5, (2, 1, 128, 128)).astype(np.float32))
    with torch.no_grad():
        assert float((fresh(x) - model(x)).abs().max()) < 1e-4
    # fine-tuning mode: BatchNorm statistics stay fixed while the rest trains
    fresh.train()
    freeze_batchnorm(fresh)
    bns = [m for m in fresh.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    before = [m.running_var.clone() for m in bns]
    fresh(x * 2.0)
    assert all(torch.equal(b, m.running_var) for b, m in zip(before, bns, strict=True))
    with torch.no_grad():
        assert float((fresh(x) - model(x)).abs().max()) < 1e-4


def test_onnx_weights_of_another_architecture_are_refused(model: UNet, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(to_onnx_bytes(model))
    with pytest.raises(ValueError, match="expected"):
        load_onnx_weights(UNet(UNetConfig(base=8, depth=4)), str(path))
    with pytest.raises(ValueError, match="convolutions"):
        load_onnx_weights(UNet(UNetConfig(base=4, depth=3)), str(path))


def _architecture(path: Path) -> UNetConfig:
    """Base width and depth of an exported U-Net, read off its convolutions."""
    graph = onnx.load(str(path)).graph
    weights = {i.name: i for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    base = int(weights[convs[0].input[1]].dims[0])
    # depth d: 2 convolutions per encoder level, 2 per decoder level (d - 1), 1 head
    return UNetConfig(base=base, depth=(len(convs) + 1) // 4)


def _real_inputs() -> np.ndarray:
    """Phantom scans through the served preprocessing, whole field and gland window."""
    xs = []
    for seed in (11, 12):
        scan = generate_scan(seed)
        counts = np.asarray(scan.counts, dtype=np.float32)
        for window in (full_window(counts.shape), gland_window(scan.gland)):
            xs.append(model_input(counts, window, SIZE, NORMALISATION))
    return np.stack(xs)[:, None].astype(np.float32)


def test_models_are_shipped() -> None:
    assert len(SHIPPED) >= 2, SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(p.parents[1])) for p in SHIPPED])
def test_shipped_weights_back_in_pytorch_compute_what_onnx_computes(path: Path) -> None:
    """The shipped ONNX weights loaded into the PyTorch U-Net give the same logits on real scans."""
    net = UNet(_architecture(path))
    load_onnx_weights(net, str(path))
    net.eval()
    x = _real_inputs()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x})
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    # a real network on real scans: logits span several units, the masks are not empty
    assert float(np.abs(ref).max()) > 1.0 and (ref > 0).any()
    assert float(np.abs(got - ref).max()) < 1e-4


def test_shipped_models_segment_phantom_scans() -> None:
    """A broken or swapped model is caught: the shipped models outline the gland of normal scans."""
    from scintiseg.models.registry import load_segmenter

    seg = load_segmenter(SHIPPED[0].parents[1], providers=("CPUExecutionProvider",), threads=1)
    scores = []
    for seed in range(4):
        scan = generate_scan(seed, kind="normal")
        r = seg.segment_frame(np.asarray(scan.counts), scan.pixel_spacing_mm)
        gland = r.masks["gland"]
        inter = int((gland & scan.gland).sum())
        scores.append(2 * inter / (int(gland.sum()) + int(scan.gland.sum())))
    assert min(scores) > 0.85, scores


def test_shipped_2x_cards_record_their_export_parity() -> None:
    """Every network of a 2.x model records the PyTorch/onnxruntime agreement its export measured."""
    import json

    cards = [json.loads(p.read_text()) for p in (SHIPPED[0].parents[1]).glob("*/card.json")]
    newer = [c for c in cards if int(str(c["version"]).split(".")[0]) >= 2]
    assert newer, "no 2.x model shipped"
    for card in newer:
        trainings = [card["training"]] + [s["training"] for s in card.get("stages", []) if s.get("training")]
        for training in trainings:
            parity = training["export_parity"]
            assert 0.0 <= parity["max_abs_logit_diff"] <= parity["tolerance"] <= 1e-3
