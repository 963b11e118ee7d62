"""The registry of model folders: which models exist, which serve, which are refused.

The models folder holds one folder per model version, any folder name (the card
says the model's name and version; folders whose name starts with ``.`` are
ignored, so a new version can be written beside the others under a hidden name
and then renamed into place). Each folder gets a **stage**:

``active``      serves: the highest version of its name among the valid folders
                that are not shadows;
``superseded``  a valid, older version of an active model (removing the newer
                folder rolls back to it);
``shadow``      the operator's ``deploy.json`` says ``{"stage": "shadow"}``: runs
                beside the active model of the same name on every image that one
                processes, its output never shown (:mod:`scintiseg.pipeline.shadow`);
``refused``     unusable, ``error`` says why: invalid card or ``deploy.json``,
                missing or corrupt ONNX file, sha256 mismatch, ONNX input or output
                shape not matching the card, the same name and version as another
                folder, or a ``needs`` label that no active model provides. Every
                other model keeps serving.

A :class:`ModelSet` is an immutable snapshot of the folders and their loaded
sessions. A study job takes one snapshot at its start and keeps it, so a job
running across a reload finishes on the versions it started with; new jobs get
the new snapshot. :meth:`Registry.reload` rescans at once (``POST
/scintiseg/models/reload``); :meth:`Registry.start` polls the folders'
modification times on a thread of its own and reloads when they change. A
folder unchanged since the last scan keeps its loaded sessions.

:meth:`ModelSet.plan` chooses the models for one image: among the active models
whose ``applies_to`` matches, the highest ``priority`` makes each label; a model
whose needed label no chosen model makes drops out; the rest run in dependency
order. Nothing here imports ``orthanc`` or onnxruntime: sessions come from the
injected loader (:func:`onnx_loader`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scintiseg.models.card import CARD_FILE, ModelCard, ModelCardError, load_card, read_card_json, version_key
from scintiseg.models.guard import ModelFilesError, confined_folder
from scintiseg.models.rules import ImageFacts
from scintiseg.models.runtime import (
    DEFAULT_PROVIDERS,
    InferenceError,
    LoadedModel,
    Segmenter,
    choose_providers,
    dependency_order,
)

log = logging.getLogger(__name__)

DEPLOY_FILE = "deploy.json"
STAGES = ("active", "shadow", "superseded", "refused")
#: How often the polling thread looks at the folders' modification times (seconds).
DEFAULT_POLL_S = 2.0

#: Turns a valid card into a loaded model (sessions); raises on a model that cannot run.
Loader = Callable[[ModelCard], Any]


def onnx_loader(providers: Sequence[str], threads: int = 0) -> Loader:
    """The real loader: ONNX Runtime sessions on the first available of ``providers``."""
    chosen = choose_providers(providers)
    return lambda card: LoadedModel.load(card, chosen, threads)


@dataclass(frozen=True)
class ModelEntry:
    """One folder of the models folder, loaded or not."""

    folder: Path
    stage: str
    error: str | None
    name: str | None
    version: str | None
    card: ModelCard | None = field(default=None, repr=False)
    model: Any = field(default=None, repr=False, compare=False)

    @property
    def ident(self) -> str:
        return f"{self.name or '?'}@{self.version or '?'}"

    def describe(self) -> dict[str, Any]:
        """The entry as ``GET /scintiseg/models`` lists it."""
        card = self.card
        raw = card.raw if card is not None else {}
        metrics = raw.get("metrics")
        return {
            "ident": self.ident,
            "name": self.name,
            "version": self.version,
            "stage": self.stage,
            "error": self.error,
            "folder": self.folder.name,
            "sha256": card.sha256 if card else None,
            "stages": [
                {"onnx": s.path.name, "sha256": s.sha256, "window": s.window, "size": s.size}
                for s in (card.stages if card else ())
            ],
            "labels": [
                {"key": lb.key, "name": lb.name, "category": list(lb.category), "type": list(lb.type),
                 "anatomic_region": list(lb.anatomic_region) if lb.anatomic_region else None,
                 "colour": list(lb.colour), "numbered": lb.numbered}
                for lb in (card.labels if card else ())
            ],
            "applies_to": card.applies_to.describe() if card else None,
            "needs": ({"window_of": card.needs.label, "margin": card.needs.margin}
                      if card and card.needs else None),
            "outline": {k: v.describe() for k, v in card.outline.items()} if card else {},
            "family": card.family if card else None,
            "creator": card.creator if card else None,
            "metrics": metrics if isinstance(metrics, dict) else None,
        }


@dataclass(frozen=True)
class Plan:
    """The models one image runs: ``models`` in dependency order, each making ``owners``' labels."""

    models: list[Any]
    #: label key -> ident of the model that makes it for this image
    owners: dict[str, str]
    #: (shadow, active) pairs: the shadow runs beside its active model
    shadows: list[tuple[Any, Any]]
    #: why no model applies (empty when some do)
    why_not: str = ""
    #: (identity, error) of served models that broke in place and would apply to the image
    unavailable: list[tuple[str, str]] = field(default_factory=list)


class ModelSet:
    """An immutable snapshot of the registry.

    ``broken`` holds, for each model name that served before and whose folder is now
    refused with no other valid version to fall back to (a file removed or corrupted
    in place), its last served entry and the error: an image it would apply to fails,
    retriably, instead of getting a result without its labels. A folder removed on
    purpose is not broken: its name simply no longer serves.
    """

    def __init__(
        self, entries: Sequence[ModelEntry], generation: int = 0,
        broken: dict[str, tuple[ModelEntry, str]] | None = None,
    ) -> None:
        self.entries = tuple(entries)
        self.generation = generation
        self.active = [e for e in self.entries if e.stage == "active"]
        self.shadows = [e for e in self.entries if e.stage == "shadow"]
        self.broken = dict(broken or {})

    @property
    def models(self) -> list[str]:
        """The active models' identities."""
        return sorted(e.ident for e in self.active)

    @property
    def providers(self) -> list[str]:
        for e in self.active:
            providers = getattr(e.model, "providers", None)
            if providers:
                return list(providers)
        return []

    def labels(self) -> dict[str, Any]:
        """Every label of the valid folders (any stage), by key; active models win."""
        out: dict[str, Any] = {}
        for e in sorted(self.entries, key=lambda e: e.stage != "active"):
            for label in e.card.labels if e.card else ():
                out.setdefault(label.key, label)
        return out

    def entry(self, name: str, version: str) -> ModelEntry | None:
        return next((e for e in self.entries if e.name == name and e.version == version), None)

    # -- choosing ------------------------------------------------------------------------
    def applies_to_series(self, modality: str, description: str) -> bool:
        """Whether some active model may apply to a series (index half of the rules)."""
        return any(e.card is not None and e.card.applies_to.matches_series(modality, description) for e in self.active)

    def unavailable_for_series(self, modality: str, description: str) -> list[tuple[str, str]]:
        """(identity, error) of the broken served models that would apply to a series."""
        return [
            (last.ident, error)
            for last, error in self.broken.values()
            if last.card is not None and last.card.applies_to.matches_series(modality, description)
        ]

    def applies_to_sop_class(self, sop_class_uid: str) -> bool:
        return any(e.card is not None and e.card.applies_to.matches_sop_class(sop_class_uid) for e in self.active)

    def plan(
        self,
        facts: ImageFacts | None,
        modality: str | None = None,
        description: str | None = None,
        sop_class_uid: str | None = None,
    ) -> Plan:
        """The models for one image (``None`` facts: every header condition passes)."""
        why: list[str] = []

        def applies(e: ModelEntry) -> bool:
            card = e.card
            assert card is not None
            rule = card.applies_to
            if modality is not None and not rule.matches_series(modality, description or ""):
                why.append(f"{e.ident}: series {modality} {description!r}")
                return False
            if sop_class_uid is not None and not rule.matches_sop_class(sop_class_uid):
                why.append(f"{e.ident}: SOP class {sop_class_uid}")
                return False
            miss = rule.matches_image(facts) if facts is not None else None
            if miss is not None:
                why.append(f"{e.ident}: {miss}")
                return False
            return True

        candidates = [e for e in self.active if applies(e)]
        unavailable = [(last.ident, error) for last, error in self.broken.values() if applies(last)]
        candidates.sort(key=lambda e: (-e.card.applies_to.priority, e.name or ""))  # type: ignore[union-attr]
        owners: dict[str, ModelEntry] = {}
        for e in candidates:
            for key in e.card.label_keys:  # type: ignore[union-attr]
                owners.setdefault(key, e)
        chosen = {e.ident: e for e in owners.values()}
        while True:  # a model whose needed label nobody makes for this image drops out
            made = {k for k, e in owners.items() if e.ident in chosen}
            dropped = [i for i, e in chosen.items() if e.card.needs is not None and e.card.needs.label not in made]  # type: ignore[union-attr]
            if not dropped:
                break
            for ident in dropped:
                why.append(f"{ident}: needs {chosen[ident].card.needs.label!r}, not made for this image")  # type: ignore[union-attr]
                del chosen[ident]
        models = dependency_order([e.model for e in chosen.values()]) if chosen else []
        shadows = [
            (s.model, chosen_e.model)
            for chosen_e in chosen.values()
            for s in self.shadows
            if s.name == chosen_e.name
        ]
        return Plan(
            models=models,
            owners={k: e.ident for k, e in owners.items() if e.ident in chosen},
            shadows=shadows,
            why_not="" if models else ("no model applies: " + "; ".join(why) if why else "no active model"),
            unavailable=unavailable,
        )

    def outdated(self, idents: Sequence[str]) -> list[str]:
        """Those of ``idents`` (``name@version``) whose name now serves another version."""
        active = {e.name: e.version for e in self.active}
        out = []
        for ident in idents:
            name, _, version = str(ident).partition("@")
            if name in active and active[name] != version:
                out.append(str(ident))
        return out


# -- scanning ------------------------------------------------------------------------------
def model_folders(root: Path) -> list[Path]:
    """The model folders of ``root``, sorted by name (hidden ones left out)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def fingerprint(folder: Path) -> tuple[Any, ...]:
    """What changes when a folder's content changes (names, sizes, modification times)."""
    try:
        items = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()]
    except OSError:
        return ("gone",)
    return tuple(items)


def read_deploy(folder: Path) -> str:
    """The stage the operator's ``deploy.json`` asks for: ``active`` (also without the file) or ``shadow``."""
    path = folder / DEPLOY_FILE
    if not path.is_file():
        return "active"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelCardError(f"{path}: not valid JSON ({exc})") from exc
    stage = raw.get("stage") if isinstance(raw, dict) else None
    if stage not in ("active", "shadow") or set(raw) - {"stage", "note"}:
        raise ModelCardError(f'{path}: must be {{"stage": "active"}} or {{"stage": "shadow"}}, got {raw!r}')
    return str(stage)


@dataclass(frozen=True)
class _Candidate:
    """A folder as loaded (before the stages are decided)."""

    folder: Path
    fingerprint: tuple[Any, ...]
    wanted: str  # "active" / "shadow"
    error: str | None
    name: str | None
    version: str | None
    card: ModelCard | None
    model: Any


def _identity(folder: Path) -> tuple[str | None, str | None]:
    """Name and version of a folder's card, as far as it can be read (for refused folders)."""
    try:
        raw = read_card_json(folder)
    except ModelCardError:
        return None, None
    name, version = raw.get("name"), raw.get("version")
    return (name if isinstance(name, str) else None, version if isinstance(version, str) else None)


def _load_candidate(folder: Path, root: Path, loader: Loader, verify_sha256: bool) -> _Candidate:
    fp = fingerprint(folder)
    name, version = _identity(folder)
    try:
        wanted = read_deploy(folder)
        if not (folder / CARD_FILE).is_file():
            raise ModelCardError(f"no model card ({CARD_FILE}) in {folder}")
        confined_folder(folder, root)  # models load from the models folder only
        card = load_card(folder, verify_sha256=verify_sha256)
        model = loader(card)
    except Exception as exc:  # any reason a folder cannot serve: the folder is refused, not the service
        error = str(exc) if isinstance(exc, ModelCardError | ModelFilesError) else f"{type(exc).__name__}: {exc}"
        return _Candidate(folder, fp, "active", error, name, version, None, None)
    return _Candidate(folder, fp, wanted, None, card.name, card.version, card, model)


def decide(candidates: Sequence[_Candidate]) -> list[ModelEntry]:
    """Stages of the folders: duplicates, versions, shadows and needs (see the module docstring)."""
    errors: dict[Path, str] = {c.folder: c.error for c in candidates if c.error}
    seen: dict[str, Path] = {}
    for c in candidates:
        if c.error:
            continue
        ident = f"{c.name}@{c.version}"
        if ident in seen:
            errors[c.folder] = f"{ident} is already served from folder {seen[ident].name}"
        else:
            seen[ident] = c.folder
    stage: dict[Path, str] = {}
    while True:
        valid = [c for c in candidates if c.folder not in errors]
        best: dict[str, _Candidate] = {}
        for c in valid:
            if c.wanted != "active":
                continue
            cur = best.get(str(c.name))
            if cur is None or version_key(str(c.version)) > version_key(str(cur.version)):
                best[str(c.name)] = c
        active = {c.folder for c in best.values()}
        made = {k for c in best.values() for k in c.card.label_keys}  # type: ignore[union-attr]
        broken = [
            c for c in valid
            if c.card is not None and c.card.needs is not None and c.card.needs.label not in made
            and (c.folder in active or c.wanted == "shadow")
        ]
        for c in broken:
            errors[c.folder] = (
                f"needs label {c.card.needs.label!r}, which no active model provides"  # type: ignore[union-attr]
            )
        if not broken:
            break
    for c in candidates:
        if c.folder in errors:
            stage[c.folder] = "refused"
        elif c.wanted == "shadow":
            stage[c.folder] = "shadow"
        else:
            stage[c.folder] = "active" if c.folder in active else "superseded"
    return [
        ModelEntry(c.folder, stage[c.folder], errors.get(c.folder), c.name, c.version,
                   None if c.folder in errors else c.card, None if c.folder in errors else c.model)
        for c in candidates
    ]


class Registry:
    """The models folder, scanned into :class:`ModelSet` snapshots."""

    def __init__(self, root: Path, loader: Loader, poll_s: float = DEFAULT_POLL_S, verify_sha256: bool = True) -> None:
        self.root = Path(root)
        self.loader = loader
        self.poll_s = poll_s
        self.verify_sha256 = verify_sha256
        self._lock = threading.Lock()
        self._cache: dict[Path, _Candidate] = {}
        self._signature: tuple[Any, ...] | None = None
        self._generation = 0
        #: the last active entry of each model name that served (see :class:`ModelSet`)
        self._served: dict[str, ModelEntry] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: called with the new snapshot after each reload that changed something
        self.on_change: Callable[[ModelSet], object] | None = None
        self._current = ModelSet(())
        self.reload()

    @property
    def current(self) -> ModelSet:
        """The snapshot new jobs use."""
        return self._current

    def signature(self) -> tuple[Any, ...]:
        return tuple((p.name, fingerprint(p)) for p in model_folders(self.root))

    def reload(self) -> ModelSet:
        """Rescan the folders now; unchanged folders keep their loaded sessions."""
        with self._lock:
            signature = self.signature()
            folders = model_folders(self.root)
            candidates = []
            for folder in folders:
                cached = self._cache.get(folder)
                if cached is not None and cached.fingerprint == fingerprint(folder):
                    candidates.append(cached)
                else:
                    candidates.append(_load_candidate(folder, self.root, self.loader, self.verify_sha256))
            self._cache = {c.folder: c for c in candidates}
            entries = decide(candidates)
            broken = self._broken(entries)
            old = {(e.folder, e.stage, e.error) for e in self._current.entries}
            changed = old != {(e.folder, e.stage, e.error) for e in entries} or self._signature != signature
            self._signature = signature
            if changed or self._generation == 0:
                self._generation += 1
                self._current = ModelSet(entries, self._generation, broken)
                self._log(entries)
            current = self._current
        if changed and self.on_change is not None:
            try:
                self.on_change(current)
            except Exception:  # a listener must not break the registry
                log.exception("model registry listener failed")
        return current

    def _broken(self, entries: Sequence[ModelEntry]) -> dict[str, tuple[ModelEntry, str]]:
        """Served names now refused without a fallback; forget names whose folders went."""
        active = {e.name for e in entries if e.stage == "active"}
        refused = {e.name: str(e.error) for e in entries if e.stage == "refused" and e.name}
        for e in entries:
            if e.stage == "active" and e.name:
                self._served[e.name] = e
        for name in [n for n in self._served if n not in active and n not in refused]:
            del self._served[name]  # removed on purpose (or renamed): no longer expected
        return {n: (e, refused[n]) for n, e in self._served.items() if n not in active and n in refused}

    def _log(self, entries: Sequence[ModelEntry]) -> None:
        for e in entries:
            if e.stage == "refused":
                log.error("model folder %s refused: %s", e.folder.name, e.error)
        log.info(
            "model registry %s (generation %d): %s",
            self.root,
            self._generation,
            "; ".join(f"{e.folder.name}: {e.ident} {e.stage}" for e in entries) or "no model folder",
        )

    def changed(self) -> bool:
        """Whether a folder was added, removed or changed since the last scan."""
        return self.signature() != self._signature

    # -- polling -------------------------------------------------------------------------
    def start(self) -> None:
        """Poll the folders every ``poll_s`` seconds on a thread of its own."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="scintiseg-models", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                if self.changed():
                    self.reload()
            except Exception:  # the poller's error boundary: keep the last snapshot, try again
                log.exception("model registry scan failed")


def load_segmenter(models_dir: Path, providers: Sequence[str] = DEFAULT_PROVIDERS, threads: int = 0) -> Segmenter:
    """A :class:`~scintiseg.models.runtime.Segmenter` on the active models of a models folder.

    Without an image to choose by, each label goes to its highest-priority model.
    """
    registry = Registry(Path(models_dir), onnx_loader(providers, threads))
    plan = registry.current.plan(None)
    if not plan.models:
        raise InferenceError(f"no usable model in {models_dir}: {plan.why_not}")
    seg = Segmenter(plan.models, plan.owners)
    log.info(
        "ScintiSeg models loaded: %s; execution providers in use: %s",
        ", ".join(seg.model_idents),
        ", ".join(seg.providers),
    )
    return seg
