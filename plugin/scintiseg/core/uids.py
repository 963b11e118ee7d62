"""Deterministic DICOM UIDs.

Every UID that ScintiSeg writes is a pure function of what it is made from
(source UIDs, model identities, a synthetic seed), so re-running the same
models on the same image writes the same instance again instead of a copy.

``pydicom.uid.generate_uid(prefix=None, entropy_srcs=...)`` ignores the
entropy sources and returns a random UID, hence this helper: a ``2.25.``
UID (ISO/IEC 9834-8) from a name-based (SHA-1, version 5) UUID of the parts.
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("5c1e7d0a-7b1e-5a0e-9c1a-5c1a75e90001")


def deterministic_uid(*parts: str) -> str:
    """A ``2.25.<uuid>`` UID that depends only on ``parts``."""
    if not parts:
        raise ValueError("deterministic_uid needs at least one part")
    return f"2.25.{uuid.uuid5(_NAMESPACE, '|'.join(str(p) for p in parts)).int}"
