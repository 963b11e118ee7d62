"""How far a shadow candidate agrees with the active model it runs beside (never shown).

A shadow model (``deploy.json`` ``{"stage": "shadow"}``) sees the same images as
the active model of its name; its masks are never stored or shown. Per image,
:func:`compare` records the Dice coefficient of each label the two share and,
for numbered labels (nodules), how many connected components one found that
the other did not (no overlap at all). :class:`AgreementLog` keeps those
records, appended to a JSON-lines file so that they outlive a restart
(``ShadowAgreementFile``), and :meth:`AgreementLog.summary` answers ``GET
/scintiseg/models/{name}/{version}/agreement``, so that a promotion is decided
on evidence gathered over weeks, not since the last start. Pure numpy/scipy.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scintiseg.pipeline.agreement import dice, nodule_matching

log = logging.getLogger(__name__)

#: Records kept per shadow model (the newest).
MAX_RECORDS = 10000


def compare(
    active: Mapping[str, np.ndarray], shadow: Mapping[str, np.ndarray], numbered: Sequence[str]
) -> dict[str, Any]:
    """Agreement on one image (masks ``(frames, rows, cols)`` by label).

    Two empty masks agree fully (Dice 1.0). Components are matched as the physician
    labels are (:func:`scintiseg.pipeline.agreement.nodule_matching`, the active model in the
    physician's place): a component counts as found by the other model when they
    share a pixel.
    """
    shared = sorted(set(active) & set(shadow))
    scores = {k: dice(active[k], shadow[k]) for k in shared}
    out: dict[str, Any] = {"dice": {k: 1.0 if v is None else v for k, v in scores.items()}}
    only_active = only_shadow = 0
    for k in shared:
        if k in numbered:
            matching = nodule_matching(active[k], shadow[k])
            only_active += matching["missed_by_ai"]
            only_shadow += matching["ai_only"]
    out["found_by_active_only"] = only_active
    out["found_by_shadow_only"] = only_shadow
    return out


class AgreementLog:
    """Per-image agreement records of the shadow models (thread-safe).

    With a ``path``, the records are read from it at start-up and each new one is
    appended to it (one JSON object per line, flushed and synced before :meth:`add`
    returns). The file is rewritten with the kept records once it holds twice as many
    lines, so it stays bounded. A line that does not parse (a write cut by a crash) is
    skipped and counted in :attr:`unreadable`; a file that cannot be written is logged
    once and the records stay in memory: agreement bookkeeping never fails a job.
    """

    def __init__(self, path: Path | None = None, max_records: int = MAX_RECORDS) -> None:
        self.path = path
        self.max_records = max_records
        self._records: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._lines = 0
        self._write_failed = False
        #: the file ends inside a line (a write cut by a crash): the next one starts a new line
        self._cut = False
        #: lines of the file that could not be read back
        self.unreadable = 0
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("shadow agreement: cannot read %s (%s); starting with no record", path, exc)
            return
        self._cut = bool(text) and not text.endswith("\n")
        for line in text.splitlines():
            if not line.strip():
                continue
            self._lines += 1
            try:
                entry = json.loads(line)
                shadow = entry.pop("shadow")
            except (ValueError, KeyError, AttributeError, TypeError):
                self.unreadable += 1
                continue
            if isinstance(shadow, str) and isinstance(entry, dict):
                items = self._records.setdefault(shadow, [])
                items.append(entry)
                if len(items) > 2 * self.max_records:
                    del items[: -self.max_records]
            else:
                self.unreadable += 1
        for items in self._records.values():
            del items[: -self.max_records]
        n = sum(len(v) for v in self._records.values())
        log.info("shadow agreement: %d record(s) read from %s%s", n, path,
                 f" ({self.unreadable} unreadable line(s) skipped)" if self.unreadable else "")

    def add(self, shadow: str, record: dict[str, Any]) -> None:
        with self._lock:
            items = self._records.setdefault(shadow, [])
            items.append(record)
            del items[: -self.max_records]
            if self.path is not None:
                self._append(shadow, record)

    def _append(self, shadow: str, record: dict[str, Any]) -> None:
        """Write one record (under the lock); the whole kept set when the file grew too long."""
        assert self.path is not None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            kept = sum(len(v) for v in self._records.values())
            if self._lines + 1 > 2 * max(kept, self.max_records):
                tmp = self.path.with_name(self.path.name + ".tmp")
                with tmp.open("w", encoding="utf-8") as f:
                    for name, items in sorted(self._records.items()):
                        for item in items:
                            f.write(json.dumps({"shadow": name, **item}, sort_keys=True) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
                self._lines = kept
                self._cut = False
            else:
                line = json.dumps({"shadow": shadow, **record}, sort_keys=True) + "\n"
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(("\n" if self._cut else "") + line)
                    f.flush()
                    os.fsync(f.fileno())
                self._lines += 1
                self._cut = False
            self._write_failed = False
        except OSError as exc:
            if not self._write_failed:
                log.warning("shadow agreement: cannot write %s (%s); records kept in memory only", self.path, exc)
            self._write_failed = True

    def summary(self, shadow: str) -> dict[str, Any]:
        """Images compared, Dice per label (mean, min), components found by one model only."""
        with self._lock:
            items = list(self._records.get(shadow, []))
        per_label: dict[str, list[float]] = {}
        for r in items:
            for k, v in (r.get("dice") or {}).items():
                per_label.setdefault(k, []).append(float(v))
        return {
            "images": len(items),
            "against": sorted({str(r.get("against")) for r in items if r.get("against")}),
            "dice": {
                k: {"mean": round(float(np.mean(v)), 4), "min": round(float(np.min(v)), 4)}
                for k, v in sorted(per_label.items())
            },
            "found_by_active_only": sum(int(r.get("found_by_active_only", 0)) for r in items),
            "found_by_shadow_only": sum(int(r.get("found_by_shadow_only", 0)) for r in items),
            "images_with_disagreement": sum(
                1 for r in items if r.get("found_by_active_only") or r.get("found_by_shadow_only")
            ),
            "recent": items[-20:],
        }
