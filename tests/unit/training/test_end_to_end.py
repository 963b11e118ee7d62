"""A tiny end-to-end run of the training pipeline.

Data, training, resume, export, model card, evaluation through the served path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scintiseg.models.card import load_card
from scintiseg.models.registry import load_segmenter
from scintiseg_training import dataset, diagnose, evaluate, export, train

pytestmark = pytest.mark.training


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 scans of the plainer kinds: enough for a tiny network to show it learns in 150 steps
    (the hard kinds — suppressed glands, thyroiditis, ectopic tissue — need a real training)."""
    from scintiseg_phantoms.thyroid.scan import draw_kind

    plain = {"normal", "cold_nodules", "graves", "salivary"}
    seeds = [seed for seed in range(200) if draw_kind(seed) in plain][:12]
    out = tmp_path_factory.mktemp("ds") / "tiny.npz"
    dataset.build(out, seeds, n_test=3, workers=1)
    return out


def test_split_is_by_scan_and_deterministic() -> None:
    seeds = list(range(100))
    train_a, test_a = dataset.split_seeds(seeds, 20)
    train_b, test_b = dataset.split_seeds(list(reversed(seeds)), 20)
    assert (train_a, test_a) == (train_b, test_b)
    assert len(test_a) == 20 and len(train_a) == 80
    assert not set(train_a) & set(test_a)


def test_dataset_couples(data: Path) -> None:
    with np.load(data) as d:
        assert d["gland_x"].shape == (24, 128, 128) and d["gland_x"].dtype == np.float16
        assert d["nodule_y"].dtype == np.uint8
        assert int(d["test"].sum()) == 6
        # both flips of a scan on the same side of the split
        for s in np.unique(d["seed"]):
            sel = d["seed"] == s
            assert sorted(d["flip"][sel].tolist()) == [False, True]
            assert len(set(d["test"][sel].tolist())) == 1
        assert float(d["gland_x"].max()) <= 1.5
        # the flipped gland input is the mirror of the original (full window, no jitter)
        i = int(np.flatnonzero((d["seed"] == d["seed"][0]) & ~d["flip"])[0])
        j = int(np.flatnonzero((d["seed"] == d["seed"][0]) & d["flip"])[0])
        np.testing.assert_allclose(d["gland_y"][i][:, ::-1], d["gland_y"][j], atol=2)
    split = json.loads(dataset.split_path(data).read_text())
    assert len(split["test"]) == 3 and len(split["train"]) == 9


def _train(
    data: Path, out: Path, task: str, epochs: int, resume: bool = False, extra: tuple[str, ...] = ()
) -> None:
    argv = [
        "--task",
        task,
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--base",
        "4",
        "--batch-size",
        "8",
        "--val-fraction",
        "0.2",
        "--threads",
        "2",
    ]
    train.main(argv + (["--resume"] if resume else []) + list(extra))


def test_a_short_run_learns(data: Path, tmp_path: Path) -> None:
    """The loss falls and the validation Dice ends well above an untrained network's.

    With the optimiser switched off (or a zero learning rate) this fails: the
    network would stay where it started.
    """
    state = train.main_state(
        ["--task", "gland", "--data", str(data), "--out", str(tmp_path / "learn"), "--steps", "150",
         "--base", "4", "--batch-size", "8", "--val-fraction", "0.25", "--lr", "0.01", "--threads", "1"]
    )
    history = state["history"]
    assert history[-1]["loss"] < 0.6 * history[0]["loss"], [h["loss"] for h in history]
    arrays = dataset.load(data, "gland")
    _, val = train.split_train_val(arrays, 0.25, None)
    assert len(val) >= 4
    torch.manual_seed(0)
    untrained = train.validate(
        train.UNet(train.UNetConfig(base=4, depth=4)), arrays.x[val], arrays.y[val], torch.device("cpu")
    )["dice_fg"]
    trained = history[-1]["val"]["dice_fg"]
    assert trained > 0.7 and trained > untrained + 0.3, (untrained, trained)


def test_counting_modes_change_only_the_noise() -> None:
    from scintiseg_phantoms.thyroid import generate_scan
    from scintiseg_phantoms.thyroid import scan as scan_module

    served = scan_module.poisson_counts
    with diagnose.counting("noise_free"):
        clean = generate_scan(3)
    with diagnose.counting("counts_x10"):
        bright = generate_scan(3)
    noisy = generate_scan(3)
    assert scan_module.poisson_counts is served
    assert np.array_equal(clean.gland, noisy.gland) and np.array_equal(bright.nodules, noisy.nodules)
    assert not np.allclose(clean.counts, np.round(clean.counts))  # expected counts, not integers
    assert 8 < bright.counts.sum() / noisy.counts.sum() < 12


def test_train_resume_export_evaluate(data: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    for task in ("gland", "nodule"):
        run = tmp_path / task
        _train(data, run, task, epochs=1)
        first = torch.load(run / train.CHECKPOINT, weights_only=False)
        assert first["epoch"] == 1 and first["step"] > 0
        _train(data, run, task, epochs=2, resume=True)
        second = torch.load(run / train.CHECKPOINT, weights_only=False)
        assert second["epoch"] == 2 and second["step"] == 2 * first["step"]
        assert len(second["history"]) == 2 and second["done"]
        folder = export.export(run, models)
        card = load_card(folder)
        assert folder.name == f"scintiseg-{task}-1.0.0" and card.raw["schema"] == 2
        assert card.name == f"scintiseg-{task}" and card.version == "1.0.0" and card.label_keys == (task,)
        (stage,) = card.stages
        assert stage.size == 128 and stage.input_name == "image" and stage.output_name == "logits"
        assert stage.window == ("image" if task == "gland" else "needs")
        assert stage.pre[0].params == {"percentile": 99.0, "clip": 1.5}
        assert card.family == "U-Net" and card.creator == "ScintiSeg"
        assert (folder / "model.onnx").stat().st_size < 10 * 1024 * 1024
    # the gland model's second pass: trained on the gland window, exported into the gland card
    with np.load(data) as d:
        assert d["gland_refine_y"].shape == d["nodule_y"].shape and d["gland_refine_y"].max() > 200
    _train(data, tmp_path / "refine", "gland_refine", epochs=1)
    export.export(tmp_path / "refine", models, version="1.0.1")
    refined_folder = models / "scintiseg-gland-1.0.1"  # a new version: a new folder beside the old
    refined = load_card(refined_folder)
    assert refined.version == "1.0.1" and refined.raw["metrics"] == {}
    assert len(refined.stages) == 2 and refined.stages[1].window == "previous"
    assert (refined_folder / "refine.onnx").is_file()
    assert "jittered gland window" in refined.raw["stages"][1]["training"]["augmentation"]
    assert load_card(models / "scintiseg-gland-1.0.0").version == "1.0.0"
    assert not [p for p in models.iterdir() if p.name.startswith(".")], "no staging folder left behind"
    served = load_segmenter(models, providers=["CPUExecutionProvider"])
    assert served.model_idents == ["scintiseg-gland@1.0.1", "scintiseg-nodule@1.0.0"]
    nodule_label = served.model("nodule").card.labels[0]
    assert nodule_label.type == ("SCT", "27925004", "Nodule")
    assert nodule_label.anatomic_region == ("SCT", "69748006", "Thyroid")
    assert served.model("gland").card.labels[0].category == ("SCT", "123037004", "Anatomical Structure")

    split = dataset.split_path(data)
    out = tmp_path / "eval"
    evaluate.main(
        [
            "--models",
            str(models),
            "--split",
            str(split),
            "--json",
            str(out / "e.json"),
            "--markdown",
            str(out / "e.md"),
            "--montage",
            str(out / "f.png"),
            "--montage-independent",
            str(out / "fi.png"),
            "--update-cards",
            "--independent",
            "2",
            "--threads",
            "2",
        ]
    )
    rep = json.loads((out / "e.json").read_text())
    assert rep["overall"]["n"] == 6
    # the held-out family, scored with the same physician's figures, as acquired (no mirror)
    independent = rep["families"]["independent"]
    assert independent["overall"]["images"] == 2 and "false_nodules_per_image" in independent["overall"]
    assert set(independent["targets"]) == {
        "gland_dice_mean_low_count_excluded", "gland_outside_fraction", "sensitivity_>=15mm",
        "sensitivity_10-15mm", "false_nodules_per_image",
    }
    assert 0.0 <= rep["overall"]["gland_dice_mean"] <= 1.0
    assert (out / "f.png").stat().st_size > 0 and (out / "fi.png").stat().st_size > 0
    card = load_card(refined_folder)  # the served gland; sha256 still right after the metrics update
    assert card.raw["metrics"]["gland_dice_mean"] == rep["overall"]["gland_dice_mean"]
    # fine-tuning from the exported model: BatchNorm stays fixed, also across a resume
    onnx_path = models / "scintiseg-nodule-1.0.0" / "model.onnx"
    _train(data, tmp_path / "nodule-ft", "nodule", epochs=1, extra=("--init-onnx", str(onnx_path)))
    _train(data, tmp_path / "nodule-ft", "nodule", epochs=2, resume=True)
    ft = torch.load(tmp_path / "nodule-ft" / train.CHECKPOINT, weights_only=False)
    assert ft["freeze_bn"] and ft["epoch"] == 2
    assert ft["started_from"]["model"] == "scintiseg-nodule@1.0.0"
    assert ft["started_from"]["sha256"] == load_card(models / "scintiseg-nodule-1.0.0").sha256
    assert all(float(v.abs().max()) == 0.0 for k, v in ft["model"].items() if k.endswith("running_mean"))
    ft_card = json.loads((export.export(tmp_path / "nodule-ft", tmp_path / "ft-models") / "card.json").read_text())
    assert ft_card["training"]["fine_tuned_from"]["model"] == "scintiseg-nodule@1.0.0"
    # the error diagnosis runs on validation seeds with the same served path
    diagnose.main(["--models", str(models), "--first-seed", "20", "--scans", "2", "--threads", "1",
                   "--json", str(out / "d.json"), "--markdown", str(out / "d.md")])
    diag = json.loads((out / "d.json").read_text())
    assert diag["seeds"] == [20, 21] and diag["grid_ceiling"]["gland"]["dice_mean"] > 0.99
    assert set(diag["counting_noise"]) == {"served", "counts_x10", "noise_free"}
    assert "gland tta=1 threshold=+0.0" in diag["postprocess_variants"]
    assert "# Where the segmentation error comes from" in (out / "d.md").read_text()
    # a new model with a new version: its card drops the old model's metrics
    _train(data, tmp_path / "gland-b", "gland", epochs=1)
    export.export(tmp_path / "gland-b", models, version="1.1.0")
    card = load_card(models / "scintiseg-gland-1.1.0")
    assert card.version == "1.1.0" and card.raw["metrics"] == {}
    assert len(card.stages) == 2  # a new first pass keeps the second
