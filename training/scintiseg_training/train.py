"""Train the gland or the nodule U-Net on the cached dataset.

Loss: BCE-with-logits on the soft targets + soft Dice. Augmentation (cheap, on
the batch): small random shifts, intensity scaling and additive noise, and
(unless ``--plain-augment``) contrast changes (gamma), blur and count-dependent
noise; the left-right flips are already in the data.

The learning rate follows a cosine decay over the run's *progress*, the larger
of ``step / total_steps`` and ``elapsed / time_budget``: with a time budget the
run anneals properly and stops on time even on a busy CPU. A checkpoint
(model, optimizer, step, elapsed time, history) is written after every epoch
and at the end, and ``--resume`` continues from it.

Examples::

    python -m scintiseg_training.train --task gland --data datasets/scintiseg.npz \\
        --out runs/gland --epochs 10 --time-budget-min 15
    python -m scintiseg_training.train --task gland --data datasets/scintiseg.npz \\
        --out runs/lc-94 --limit-train 94 --steps 600
    python -m scintiseg_training.train ... --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from scintiseg.models.card import sha256_file

from .dataset import TASK_ARRAYS, Arrays, load, seed_hash
from .unet import UNet, UNetConfig, count_parameters, freeze_batchnorm, load_onnx_weights

CHECKPOINT = "last.pt"
VAL_SALT = "scintiseg-val-v1"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def split_train_val(data: Arrays, val_fraction: float, limit_train: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation couples, both from the training scans.

    Validation is a held-out slice of the training scans (whole scans, both
    flips). ``limit_train`` keeps the first couples of the remaining scans in a
    fixed hash order, so the learning-curve subsets are nested.
    """
    train_idx = np.flatnonzero(~data.test)
    scans = sorted({int(s) for s in data.seed[train_idx]}, key=lambda s: seed_hash(s, VAL_SALT))
    n_val = max(1, int(round(len(scans) * val_fraction))) if len(scans) > 1 else 0
    val_scans = set(scans[:n_val])
    rank = {s: i for i, s in enumerate(scans)}
    is_val = np.array([int(s) in val_scans for s in data.seed[train_idx]])
    val = train_idx[is_val]
    fit = train_idx[~is_val]
    fit = fit[np.lexsort((data.flip[fit], [rank[int(s)] for s in data.seed[fit]]))]
    if limit_train is not None:
        fit = fit[:limit_train]
    return fit, val


def augment(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, max_shift: int = 4, strong: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random shifts (per sample), intensity scaling and noise; with ``strong``, also
    contrast (gamma), blur and count-dependent noise, so that the networks do not
    learn one generator's imaging model.

    Only the image changes in the strong steps: the targets (the gland and its
    nodules) stay where they are.
    """
    n = x.shape[0]
    if max_shift > 0:
        shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=gen)
        xs, ys = [], []
        for i in range(n):
            s = (int(shifts[i, 0]), int(shifts[i, 1]))
            xs.append(torch.roll(x[i], s, dims=(-2, -1)))
            ys.append(torch.roll(y[i], s, dims=(-2, -1)))
        x, y = torch.stack(xs), torch.stack(ys)
    if strong:
        x = _strong(x, gen)
    scale = 0.85 + 0.3 * torch.rand((n, 1, 1, 1), generator=gen)
    sigma = 0.03 * torch.rand((n, 1, 1, 1), generator=gen)
    noise = torch.randn(x.shape, generator=gen) * sigma
    x = torch.clamp(x * scale + noise, 0.0, 1.5)
    return x, y


#: Gaussian kernels (sigma in model pixels) for the blur augmentation.
_BLUR_SIGMAS = (0.6, 1.0, 1.5)


def _gauss_kernel(sigma: float) -> torch.Tensor:
    r = int(math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma * sigma))
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = _gauss_kernel(sigma)
    pad = len(k) // 2
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, pad, pad), mode="replicate"), k.view(1, 1, -1, 1))


def _strong(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per sample: gamma 0.7-1.4 (half the samples), a Gaussian blur (a third; one
    width per batch), and noise whose variance follows the intensity (a third)."""
    n = x.shape[0]
    u = torch.rand((n, 3, 1, 1), generator=gen)
    gamma = torch.where(u[:, 0:1] < 0.5, 0.7 + 0.7 * torch.rand((n, 1, 1, 1), generator=gen), 1.0)
    x = torch.clamp(x, min=0.0) ** gamma
    sigma = _BLUR_SIGMAS[int(torch.randint(0, len(_BLUR_SIGMAS), (1,), generator=gen))]
    chosen = u[:, 1, 0, 0] < 1 / 3
    if bool(chosen.any()):
        x = x.clone()
        x[chosen] = _blur(x[chosen], sigma)
    level = (0.02 + 0.08 * torch.rand((n, 1, 1, 1), generator=gen)) * (u[:, 2:3] < 1 / 3)
    return x + torch.randn(x.shape, generator=gen) * level * torch.sqrt(torch.clamp(x, min=0.0))


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits on soft targets + soft Dice over the batch."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    dice = (2 * inter + 1.0) / (p.sum() + target.sum() + 1.0)
    return bce + (1 - dice)


def dice_scores(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-image Dice of boolean ``(N, H, W)`` masks; 1 where both are empty."""
    inter = (pred & truth).sum(axis=(1, 2))
    tot = pred.sum(axis=(1, 2)) + truth.sum(axis=(1, 2))
    return np.where(tot == 0, 1.0, 2 * inter / np.maximum(tot, 1))


@torch.no_grad()
def validate(
    model: torch.nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device, batch: int = 64
) -> dict[str, float]:
    """Dice on the 128-pixel model grid (targets > 0.5, logits > 0)."""
    model.eval()
    preds = []
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i : i + batch].astype(np.float32))[:, None].to(device)
        preds.append((model(xb)[:, 0] > 0).cpu().numpy())
    model.train()
    if not preds:
        return {}
    pred = np.concatenate(preds)
    truth = y >= 128
    d = dice_scores(pred, truth)
    has = truth.any(axis=(1, 2))
    out = {"dice_all": float(d.mean())}
    if has.any():
        out["dice_fg"] = float(d[has].mean())
    if (~has).any():
        out["empty_clean"] = float((~pred[~has].any(axis=(1, 2))).mean())
    return out


def describe_onnx(path: Path) -> dict[str, str]:
    """Which model a fine-tuning run started from: file, sha256, and name@version if a card is beside it."""
    out = {"onnx": str(path), "sha256": sha256_file(path)}
    card = path.parent / "card.json"
    if card.is_file():
        raw = json.loads(card.read_text(encoding="utf-8"))
        out["model"] = f"{raw.get('name')}@{raw.get('version')}"
    return out


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_model(run: Path, map_location: str = "cpu") -> tuple[UNet, dict[str, Any]]:
    """The model of a run's checkpoint (eval mode) and the checkpoint dictionary."""
    ckpt = torch.load(Path(run) / CHECKPOINT, map_location=map_location, weights_only=False)
    model = UNet(UNetConfig(**ckpt["unet"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt


def train(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = load(args.data, args.task)
    fit, val = split_train_val(data, args.val_fraction, args.limit_train)
    if len(fit) == 0:
        raise SystemExit("no training couples")
    # Keep the data compact in memory (float16 inputs, uint8 targets).
    x_all = torch.from_numpy(data.x[fit])
    y_all = torch.from_numpy(data.y[fit])
    x_val, y_val = data.x[val], data.y[val]
    steps_per_epoch = max(1, math.ceil(len(fit) / args.batch_size))
    total_steps = args.steps if args.steps else args.epochs * steps_per_epoch
    budget_s = args.time_budget_min * 60.0 if args.time_budget_min else math.inf

    config = UNetConfig(base=args.base, depth=args.depth)
    model = UNet(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step, epoch, elapsed = 0, 0, 0.0
    history: list[dict[str, Any]] = []
    ckpt_path = out / CHECKPOINT
    # Fine-tuning an exported model: its BatchNorms were folded away, so they stay fixed.
    freeze_bn = bool(args.init_onnx)
    started_from: dict[str, str] | None = None
    if args.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ckpt["unet"] != config.as_dict() or ckpt["task"] != args.task:
            raise SystemExit(f"{ckpt_path} is a {ckpt['task']} {ckpt['unet']} run, not {args.task} {config}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, epoch, elapsed = ckpt["step"], ckpt["epoch"], ckpt["elapsed_s"]
        history = ckpt["history"]
        freeze_bn = bool(ckpt.get("freeze_bn", False))
        started_from = ckpt.get("started_from")
        print(f"resumed {ckpt_path} at epoch {epoch}, step {step}, {elapsed:.0f} s", file=sys.stderr)
    elif args.init_onnx:
        load_onnx_weights(model, str(args.init_onnx))
        started_from = describe_onnx(args.init_onnx)
        print(f"started from {args.init_onnx} (BatchNorm folded, kept fixed)", file=sys.stderr)

    print(
        f"{args.task}: {len(fit)} training couples, {len(val)} validation, UNet base {config.base} "
        f"depth {config.depth} ({count_parameters(model)} parameters), device {device}, "
        f"{total_steps} steps max, budget {args.time_budget_min or 'none'} min",
        file=sys.stderr,
    )
    gen = torch.Generator().manual_seed(args.seed + 1000 * epoch + step)

    def progress() -> float:
        return max(step / total_steps, elapsed / budget_s)

    def state(val_metrics: dict[str, float] | None = None) -> dict[str, Any]:
        return {
            "task": args.task,
            "unet": config.as_dict(),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "epoch": epoch,
            "elapsed_s": elapsed,
            "history": history,
            "n_train": int(len(fit)),
            "n_val": int(len(val)),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "done": progress() >= 1.0,
            "freeze_bn": freeze_bn,
            "started_from": started_from,
            "device": str(device),
        }

    def train_mode() -> None:
        model.train()
        if freeze_bn:
            freeze_batchnorm(model)

    train_mode()
    while progress() < 1.0:
        perm = torch.randperm(len(fit), generator=gen)
        t_epoch = time.perf_counter()
        seen, loss_sum = 0, 0.0
        for b in range(steps_per_epoch):
            if progress() >= 1.0:
                break
            t0 = time.perf_counter()
            lr = args.lr * 0.5 * (1 + math.cos(math.pi * min(progress(), 1.0)))
            warm = min(1.0, (step + 1) / 50)
            for g in opt.param_groups:
                g["lr"] = lr * warm
            idx = perm[b * args.batch_size : (b + 1) * args.batch_size]
            xb = x_all[idx].float()[:, None]
            yb = y_all[idx].float()[:, None] / 255.0
            xb, yb = augment(xb, yb, gen, args.max_shift, strong=not args.plain_augment)
            xb, yb = xb.to(device), yb.to(device)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(idx)
            loss_sum += float(loss.detach()) * len(idx)
            elapsed += time.perf_counter() - t0
            if step % 10 == 0:
                rate = seen / (time.perf_counter() - t_epoch)
                print(
                    f"\r  epoch {epoch + 1} step {b + 1}/{steps_per_epoch} (total {step}) "
                    f"loss {loss_sum / seen:.4f} lr {lr:.2e} {rate:.0f} img/s",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
        epoch += 1
        t_val = time.perf_counter()
        metrics = validate(model, x_val, y_val, device)
        train_mode()
        elapsed += time.perf_counter() - t_val
        dt = time.perf_counter() - t_epoch
        frac = min(progress(), 1.0)
        eta = elapsed / frac - elapsed if frac > 0 else math.nan
        rec = {
            "epoch": epoch,
            "step": step,
            "loss": loss_sum / max(seen, 1),
            "val": metrics,
            "img_per_s": seen / dt,
            "elapsed_s": elapsed,
        }
        history.append(rec)
        val_txt = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        print(
            f"\nepoch {epoch} step {step}/{total_steps} loss {rec['loss']:.4f} val {val_txt} "
            f"{rec['img_per_s']:.0f} img/s elapsed {elapsed / 60:.1f} min ETA {eta / 60:.1f} min",
            file=sys.stderr,
            flush=True,
        )
        save_checkpoint(ckpt_path, state(metrics))
    (out / "history.json").write_text(json.dumps(history, indent=1), encoding="utf-8")
    print(
        f"done: {step} steps, {epoch} epochs, {elapsed / 60:.1f} min; checkpoint {ckpt_path}",
        file=sys.stderr,
    )
    return state()


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--task",
        choices=tuple(TASK_ARRAYS),
        required=True,
        help="gland, nodule, or gland_refine (the gland model's second pass, on the gland window)",
    )
    ap.add_argument("--data", type=Path, required=True, help="datasets/<name>.npz")
    ap.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, history)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=0, help="fixed number of steps (overrides --epochs)")
    ap.add_argument("--limit-train", type=int, default=None, help="use only the first K training couples")
    ap.add_argument("--val-fraction", type=float, default=0.03)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument(
        "--time-budget-min",
        type=float,
        default=0.0,
        help="stop (annealed) after this much training time",
    )
    ap.add_argument("--base", type=int, default=8, help="U-Net channels at the first level")
    ap.add_argument("--depth", type=int, default=4, help="U-Net resolution levels")
    ap.add_argument("--max-shift", type=int, default=4, help="random shift augmentation, pixels")
    ap.add_argument(
        "--plain-augment",
        action="store_true",
        help="only shifts, scaling and flat noise (no gamma, blur or count-dependent noise)",
    )
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    ap.add_argument(
        "--init-onnx",
        type=Path,
        default=None,
        help="fine-tune: start from this exported model.onnx (same --base/--depth; BatchNorm kept fixed)",
    )
    return ap


def main_state(argv: list[str] | None = None) -> dict[str, Any]:
    """Train from command-line arguments; returns the final checkpoint dictionary."""
    return train(build_parser().parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    main_state(argv)


if __name__ == "__main__":
    main()
