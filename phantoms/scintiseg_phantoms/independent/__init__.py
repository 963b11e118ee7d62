"""The independent phantom family: held out, never trained or tuned on.

Anterior thyroid scintigraphies (Tc-99m pertechnetate and I-131, pinhole and parallel
hole) written apart from the training family, with their own shape model (spline lobes
lobulated through Fourier descriptors, the isthmus a bridge of their union) and imaging
model (depth-dependent two-component PSF, scatter, flood non-uniformity, pinhole
vignetting, room background). They measure how models generalise, as a
leave-one-centre-out study does: nothing that trains, selects or tunes a model may read
them. ``docs/independent-phantoms.md`` describes the family.

* :func:`generate` — ``generate(seed, kind=None) -> Scan``, deterministic from the seed;
* :data:`KINDS` — the clinical presentations, whose parameters sit in :data:`KIND_TABLE`.
"""

from .generator import generate, pick_kind
from .kinds import KIND_TABLE, KINDS, KindSpec

__all__ = ["KINDS", "KIND_TABLE", "KindSpec", "generate", "pick_kind"]
