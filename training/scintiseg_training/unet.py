"""A compact 2-D U-Net: one input channel, one logit channel, any batch size.

Sized for CPU serving: with ``base=8`` and ``depth=4`` a 128 x 128 forward pass
costs about 0.1 GMAC, a few milliseconds in onnxruntime. BatchNorm folds into
the convolutions at export, so it costs nothing at inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class UNetConfig:
    """Architecture hyper-parameters, stored in checkpoints and model cards."""

    base: int = 8
    depth: int = 4

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with ``depth`` resolution levels (``depth - 1`` poolings).

    Level ``i`` has ``base * 2**i`` channels. Upsampling is bilinear
    (``align_corners=False``) followed by concatenation with the skip and a
    double convolution. The input side must be divisible by ``2**(depth-1)``.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        base, depth = self.config.base, self.config.depth
        if depth < 2:
            raise ValueError("depth must be at least 2")
        chans = [base * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        cin = 1
        for c in chans:
            self.down.append(_block(cin, c))
            cin = c
        self.up = nn.ModuleList()
        for i in range(depth - 2, -1, -1):
            self.up.append(_block(chans[i + 1] + chans[i], chans[i]))
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        out: torch.Tensor = self.head(x)
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def convolutions(model: UNet) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """The network's convolutions in forward order, each with the BatchNorm that follows it."""
    out: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = []
    for block in [*model.down, *model.up]:
        layers = list(block)
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Conv2d):
                bn = layers[i + 1]
                out.append((layer, bn if isinstance(bn, nn.BatchNorm2d) else None))
    out.append((model.head, None))
    return out


@torch.no_grad()
def load_onnx_weights(model: UNet, onnx_path: str) -> None:
    """Start ``model`` from an exported ONNX model of the same architecture.

    The exporter folds each BatchNorm into the convolution before it, so the
    ONNX file holds one weight and one bias per convolution. Those go into the
    convolutions, and every BatchNorm becomes the identity plus that bias
    (mean 0, variance ``1 - eps``, scale 1). The network then computes what the
    ONNX model computes *with BatchNorm in eval mode*: fine-tune it with
    :func:`freeze_batchnorm`, since batch statistics would no longer match.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(onnx_path).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    targets = convolutions(model)
    if len(convs) != len(targets):
        raise ValueError(f"{onnx_path} has {len(convs)} convolutions, the network {len(targets)}")
    for node, (conv, bn) in zip(convs, targets, strict=True):
        w = weights[node.input[1]]
        b = weights[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0], dtype=np.float32)
        if tuple(w.shape) != tuple(conv.weight.shape):
            raise ValueError(f"{onnx_path}: convolution {node.name} is {w.shape}, expected {tuple(conv.weight.shape)}")
        conv.weight.copy_(torch.from_numpy(w.copy()))
        if bn is None:
            if conv.bias is None:
                raise ValueError(f"{onnx_path}: convolution {node.name} has a bias the network cannot hold")
            conv.bias.copy_(torch.from_numpy(b.copy()))
        else:
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b.copy()))
            if bn.running_mean is None or bn.running_var is None:
                raise ValueError("BatchNorm without running statistics cannot hold a folded model")
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep every BatchNorm in eval mode (fixed statistics); its scale and shift still learn."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
