"""Pseudonymization on arrival: the department's anonymized database.

With ``ScintiSeg.Anonymization.Enabled``, every study that becomes stable and
is not pseudonymous yet is copied, instance by instance, through Orthanc's own
anonymization (``POST /instances/{id}/anonymize``: the DICOM PS3.15 basic
profile of Orthanc's ``DicomVersion`` 2021b, private tags removed) with keyed,
deterministic pseudonyms:

* PatientName ``Th_`` + 12 hex digits, PatientID ``ID_`` + 12, AccessionNumber
  ``TA_`` + 12: each the first 12 hex digits of HMAC-SHA256(secret, original
  value). The same patient always gets the same pseudonym, and nobody without
  the secret can recompute (or test a guess against) it;
* Study, Series and SOP Instance UIDs: ``2.25`` UIDs derived from
  HMAC-SHA256(secret, original UID). Orthanc would draw random ones; keyed
  ones make the copy a pure function of the original, so copying again (after
  Orthanc stopped half-way, or when a late image of the study arrives) stores
  the very same instances ("AlreadyStored") instead of duplicates.

Why per instance rather than ``POST /studies/{id}/anonymize``: that call draws
new random UIDs at every run, so a second run (a crash, a late image, a kept
original sent again) would add a second copy of every image. The per-instance
call applies the same profile (same tables, same Replace/Keep rules) and lets
the UIDs be replaced with the keyed ones (``Force``).

Order of work, so that nothing is lost if Orthanc stops at any point: copy
every instance, then delete exactly the originals that have a stored copy
(instance by instance: an image that arrived meanwhile stays, and its study
becomes stable again and is copied in turn). Until the last original is gone
the original study has no ScintiSeg result, so the start-up scan queues it
again and the copy resumes (a no-op for the instances already copied).

A study is pseudonymous (never anonymized again, and the only kind that is
segmented) when its PatientID and PatientName have the pseudonym patterns
(:func:`is_pseudonymous`). Labels that physicians draw on a pseudonymized
image carry its patient module, so they are recognised the same way.

With ``KeepOriginal``, the original stays and is marked with a ScintiSeg
result ``skipped`` naming its copy; it is never segmented.

The secret is never logged, never part of a REST answer and not shown by
``repr`` of the configuration. Nothing here imports ``orthanc``: I/O goes
through :class:`scintiseg.core.store.Gateway`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from scintiseg.core.result import Status, StudyResult
from scintiseg.core.store import Gateway, GatewayError, NotFoundError
from scintiseg.core.uids import deterministic_uid

log = logging.getLogger(__name__)

__all__ = [
    "ANONYMIZATION_DEFAULTS",
    "AnonymizationConfig",
    "Anonymizer",
    "is_pseudonymous",
    "keyed_uid",
    "orthanc_request",
    "parse_anonymization",
    "pseudonym",
]

#: Pseudonym prefixes (the department's convention) and length of the hex part.
PREFIXES = {"PatientName": "Th_", "PatientID": "ID_", "AccessionNumber": "TA_"}
HEX_DIGITS = 12
_PATTERN = {key: re.compile(rf"^{prefix}[0-9a-f]{{{HEX_DIGITS}}}$") for key, prefix in PREFIXES.items()}

#: What the date attributes become: removed by the profile, kept, or shifted by a
#: per-patient number of days (1..DateShiftMaxDays earlier, from the secret).
DATE_MODES = ("Remove", "Keep", "Shift")
#: The date/time attributes ``Dates`` governs (those of an NM image and of a SEG).
DATE_TAGS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate")
TIME_TAGS = ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "InstanceCreationTime")
#: Orthanc's anonymization profile (PS3.15 E.1-1 of this DICOM edition).
DICOM_VERSION = "2021b"
#: Attributes that ``Keep`` may never name: the identity the pseudonyms replace.
IDENTITY = ("PatientName", "PatientID", "AccessionNumber", "PatientBirthDate", "OtherPatientIDsSequence",
            "OtherPatientNames", "PatientAddress", "InstitutionName", "ReferringPhysicianName")
#: Environment variable that, when set, gives the secret (so it need not sit in orthanc.json).
SECRET_ENV = "SCINTISEG_ANONYMIZATION_SECRET"
MIN_SECRET_LENGTH = 16

#: The options of ``ScintiSeg.Anonymization`` and their defaults.
ANONYMIZATION_DEFAULTS: dict[str, Any] = {
    "Enabled": False,
    "Secret": None,
    "KeepOriginal": False,
    "Dates": "Remove",
    "DateShiftMaxDays": 365,
    "Keep": [],
}

StopFlag = Callable[[], bool]


@dataclass(frozen=True)
class AnonymizationConfig:
    """The validated ``ScintiSeg.Anonymization`` section (documented in ``orthanc.json``)."""

    enabled: bool = False
    #: the HMAC key; ``repr=False`` keeps it out of every printed configuration
    secret: str = field(default="", repr=False)
    keep_original: bool = False
    dates: str = "Remove"
    date_shift_max_days: int = 365
    keep: tuple[str, ...] = ()


def parse_anonymization(value: Any, environ: Mapping[str, str]) -> AnonymizationConfig:
    """Validate the section; :class:`ValueError` names the option at fault (never the secret)."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(ANONYMIZATION_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} (known: {', '.join(ANONYMIZATION_DEFAULTS)})")
    opts = {**ANONYMIZATION_DEFAULTS, **value}
    for key in ("Enabled", "KeepOriginal"):
        if not isinstance(opts[key], bool):
            raise ValueError(f"{key} must be true or false, got {opts[key]!r}")
    dates = opts["Dates"]
    if dates not in DATE_MODES:
        raise ValueError(f"Dates must be one of {', '.join(DATE_MODES)}, got {dates!r}")
    days = opts["DateShiftMaxDays"]
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
        raise ValueError(f"DateShiftMaxDays must be an integer in [1, 36500], got {days!r}")
    keep = opts["Keep"]
    if not isinstance(keep, list) or not all(isinstance(k, str) and k for k in keep):
        raise ValueError(f"Keep must be a list of DICOM keywords, got {keep!r}")
    forbidden = sorted(set(keep) & set(IDENTITY + tuple(DATE_TAGS) + tuple(TIME_TAGS)))
    if forbidden:
        raise ValueError(f"Keep may not name {', '.join(forbidden)} (identity; dates are set with 'Dates')")
    secret = environ.get(SECRET_ENV) or opts["Secret"]
    if opts["Enabled"]:
        if not isinstance(secret, str) or not secret:
            raise ValueError(f"Secret is required when Enabled is true (or set ${SECRET_ENV})")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"Secret must have at least {MIN_SECRET_LENGTH} characters")
    elif secret is not None and not isinstance(secret, str):
        raise ValueError("Secret must be a string")
    return AnonymizationConfig(
        enabled=opts["Enabled"],
        secret=secret or "",
        keep_original=opts["KeepOriginal"],
        dates=dates,
        date_shift_max_days=days,
        keep=tuple(keep),
    )


# -- pure pseudonyms ---------------------------------------------------------------------------
def _mac(secret: str, value: str) -> str:
    return hmac.new(secret.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()


def pseudonym(secret: str, keyword: str, value: str) -> str:
    """``Th_``/``ID_``/``TA_`` + the first 12 hex digits of HMAC-SHA256(secret, value)."""
    return PREFIXES[keyword] + _mac(secret, value.strip())[:HEX_DIGITS]


def keyed_uid(secret: str, uid: str) -> str:
    """A ``2.25`` UID that only the secret links to ``uid`` (same ``uid``, same result)."""
    return deterministic_uid("scintiseg-pseudonym", _mac(secret, uid.strip()))


def date_shift_days(secret: str, patient_id: str, max_days: int) -> int:
    """How many days earlier this patient's dates move (1..max_days, fixed per patient)."""
    return 1 + int(_mac(secret, "date-shift:" + patient_id.strip())[:8], 16) % max_days


def shift_date(value: str, days: int) -> str | None:
    """A DICOM DA ``YYYYMMDD`` moved ``days`` earlier; ``None`` when it is not a date."""
    text = value.strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        moved = date(int(text[:4]), int(text[4:6]), int(text[6:8])) - timedelta(days=days)
    except ValueError:
        return None
    return moved.strftime("%Y%m%d")


def is_pseudonymous(tags: Mapping[str, Any]) -> bool:
    """Whether PatientID and PatientName are pseudonyms (the marker of an anonymized study)."""
    return all(bool(_PATTERN[k].match(str(tags.get(k) or "").strip())) for k in ("PatientID", "PatientName"))


def orthanc_request(config: AnonymizationConfig, tags: Mapping[str, Any]) -> dict[str, Any]:
    """The body of ``POST /instances/{id}/anonymize`` for an instance with these tags.

    ``tags``: the instance's simplified tags (``GET /instances/{id}/simplified-tags``).
    """
    secret = config.secret
    patient_id = str(tags.get("PatientID") or "")
    replace: dict[str, str] = {
        keyword: pseudonym(secret, keyword, str(tags.get(keyword) or "")) for keyword in PREFIXES
    }
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if tags.get(keyword):
            replace[keyword] = keyed_uid(secret, str(tags[keyword]))
    keep = list(config.keep)
    remove: list[str] = []
    if config.dates == "Remove":
        # the profile empties or drops the study/series/acquisition/content dates but keeps
        # Instance Creation Date/Time (checked on Orthanc 1.10.1): drop them as well
        remove = [k for k in ("InstanceCreationDate", "InstanceCreationTime") if k in tags]
    elif config.dates == "Keep":
        keep += [k for k in DATE_TAGS + TIME_TAGS if k in tags]
    else:  # Shift
        days = date_shift_days(secret, patient_id, config.date_shift_max_days)
        for keyword in DATE_TAGS:
            moved = shift_date(str(tags.get(keyword) or ""), days)
            if moved is not None:
                replace[keyword] = moved
        keep += [k for k in TIME_TAGS if k in tags]
    return {
        "Replace": replace,
        "Keep": keep,
        "Remove": remove,
        "KeepPrivateTags": False,
        "Force": True,  # needed to replace PatientID and the UIDs
        "DicomVersion": DICOM_VERSION,
    }


# -- the job -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What one run did: the pseudonymized study and how many originals it copied/deleted."""

    original: str
    pseudonymized: str | None
    copied: int
    deleted: int
    complete: bool


class Anonymizer:
    """Copies a non-pseudonymous study into its pseudonymized twin, then drops the original.

    :meth:`run` is a worker step (see :class:`scintiseg.app.service.Service`): it
    returns ``None`` for a study that is already pseudonymous (segment it), an
    :class:`Outcome` otherwise (do not segment it). It never raises: a failure
    is logged by Orthanc id and leaves the original in place for the next try.
    """

    def __init__(self, config: AnonymizationConfig, gateway: Gateway, result_writer: Callable[
            [str, StudyResult], None] | None = None) -> None:
        if not config.enabled or not config.secret:
            raise ValueError("the anonymizer needs an enabled configuration with a secret")
        self.config = config
        self.gateway = gateway
        #: records a ``skipped`` result on a kept original (default: the gateway's write_result)
        self.result_writer = result_writer or gateway.write_result
        self.copied = 0
        self.studies = 0

    def needed(self, study_id: str) -> bool:
        """Whether the study still holds an original (non-pseudonymous) patient (index only)."""
        return not is_pseudonymous(self.gateway.study_tags(study_id))

    def run(self, study_id: str, should_stop: StopFlag = lambda: False) -> Outcome | None:
        """Pseudonymize one study if it needs it; the step's error boundary."""
        try:
            if not self.needed(study_id):
                return None
            return self._copy(study_id, should_stop)
        except NotFoundError:
            log.warning("study %s: gone before it was pseudonymized", study_id)
            return Outcome(study_id, None, 0, 0, False)
        except Exception as exc:  # keep the original; the next stable event or start retries
            log.error("study %s: pseudonymization failed, original kept: %s", study_id, type(exc).__name__)
            log.debug("study %s: pseudonymization failure detail", study_id, exc_info=True)
            return Outcome(study_id, None, 0, 0, False)

    def _copy(self, study_id: str, should_stop: StopFlag) -> Outcome:
        if self.config.keep_original:
            meta = self.gateway.study_metadata(study_id)
            kept = meta.result
            if kept is not None and kept.pseudonymized_study and kept.study_last_update == meta.last_update:
                # a kept original, unchanged since it was copied: nothing to do (start-up scans)
                return Outcome(study_id, kept.pseudonymized_study, 0, 0, True)
        originals = [iid for s in self.gateway.study_series(study_id) for iid in s.instance_ids]
        copies: dict[str, str] = {}
        target: str | None = None
        for iid in originals:
            if should_stop():
                log.warning("study %s: pseudonymization interrupted; resumes at the next start", study_id)
                return Outcome(study_id, target, len(copies), 0, False)
            tags = self.gateway.instance_tags(iid)
            data = self.gateway.anonymize_instance(iid, orthanc_request(self.config, tags))
            stored = self.gateway.store_instance(data)
            if stored.status not in ("Success", "AlreadyStored"):
                raise GatewayError(f"storing the pseudonymized copy of {iid} answered {stored.status}")
            copies[iid] = stored.instance_id
            target = stored.parent_study or target
        self.copied += len(copies)
        self.studies += 1
        deleted = 0
        if self.config.keep_original:
            if target is not None:
                last_update = self.gateway.study_metadata(study_id).last_update
                self.result_writer(study_id, kept_original_result(target, last_update))
        else:
            # only the originals that have a stored copy: an image that arrived meanwhile stays
            for iid in copies:
                try:
                    self.gateway.delete_instance(iid)
                    deleted += 1
                except NotFoundError:
                    pass
        log.info(
            "study %s: pseudonymized into study %s (%d instance(s) copied, %d original(s) deleted)",
            study_id, target, len(copies), deleted,
        )
        return Outcome(study_id, target, len(copies), deleted, True)


def kept_original_result(pseudonymized_study: str, last_update: str = "") -> StudyResult:
    """The result recorded on an original kept beside its pseudonymized copy.

    ``study_last_update`` lets a later run see that the original has not changed since.
    """
    return StudyResult(
        status=Status.SKIPPED,
        reason=f"original of the pseudonymized study {pseudonymized_study}: the copy is the one processed",
        schema=1,
        study_last_update=last_update,
        pseudonymized_study=pseudonymized_study,
    )
