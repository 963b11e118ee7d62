"""Montage of independent-family scans with their outlines (for eyeballing realism).

``python -m scintiseg_phantoms.independent.montage out.png [n] [first_seed]`` writes a
grid of ``n`` scans (default 16) from seeds ``first_seed ...``: the shared
:func:`scintiseg_phantoms.montage.montage` rendering (gland outline green, cold nodules
red, kind, isotope, collimator and matrix in the corner). Needs Pillow.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ..montage import montage
from .generator import generate

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out = Path(args[0]) if args else Path("independent-montage.png")
    n = int(args[1]) if len(args) > 1 else 16
    first = int(args[2]) if len(args) > 2 else 0
    image = montage([generate(first + i) for i in range(n)])
    image.quantize(colors=256).save(out, optimize=True)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
