"""The ``ScintiSeg`` section of Orthanc's configuration, parsed once.

Orthanc hands the plugin its whole configuration as JSON
(``orthanc.GetConfiguration()``); :func:`load_config` reads the ``ScintiSeg``
section into a frozen :class:`Config` at start-up and raises
:class:`ConfigError` with a message naming the option at fault, so that a
typo stops Orthanc with a clear line in its log instead of surfacing on the
first study. Unknown options are errors too (with a "did you mean" hint):
a misspelt rule that silently kept its default would process the wrong
studies.

Every option, its default and its meaning are documented in ``orthanc.json``
and ``docs/plugin.md``; the two must agree with :data:`DEFAULTS` (a unit test
checks that ``orthanc.json`` parses here).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scintiseg.dicom.nm import NM_IMAGE_STORAGE, NM_IMAGE_STORAGE_RETIRED
from scintiseg.intake.anonymize import ANONYMIZATION_DEFAULTS, AnonymizationConfig, parse_anonymization
from scintiseg.models.rules import RuleError, compile_regex
from scintiseg.work.selection import Selection

SECTION = "ScintiSeg"


#: The option names of the ``ScintiSeg`` section and their defaults.
DEFAULTS: dict[str, Any] = {
    "Enabled": True,
    "ModelsDirectory": None,
    "ExecutionProviders": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "InferenceThreads": 0,
    "WorkerThreads": 1,
    "Modalities": ["NM"],
    "SopClasses": [NM_IMAGE_STORAGE, NM_IMAGE_STORAGE_RETIRED],
    "SeriesDescriptionRegex": None,
    "RadiopharmaceuticalRegex": None,
    "OutputSeriesNumber": 9901,
    "OutputSeriesDescription": "ScintiSeg {models}",
    "StorePreview": True,
    "PreviewSeriesNumber": 9902,
    "PreviewSeriesDescription": "ScintiSeg preview",
    "OhifDirectory": "build/ohif/site",
    "TrackStability": True,
    "ResultMetadata": "ScintiSegResult",
    "RecoveryScanMaxStudies": 100000,
    "RecoveryScanPageSize": 200,
    "StopTimeoutSeconds": 30,
    "ModelsPollSeconds": 2,
    "ReprocessOnUpgrade": False,
    "DeleteSupersededSeg": False,
    "ShadowAgreementFile": None,
    "LogLevel": "INFO",
    "Anonymization": dict(ANONYMIZATION_DEFAULTS),
    "WorkState": "auto",
    "WorkMetadata": "ScintiSegWork",
    "RetryLimit": 3,
    "RetryBackoffSeconds": 30,
    "LabelsMetadata": "ScintiSegLabels",
    "ClusterDatabase": None,
    "ClusterLeaseSeconds": 30,
    "ClusterNodeName": None,
}

#: ``WorkState`` choices (:mod:`scintiseg.work.workstate`); ``auto`` picks the most capable.
WORK_STATES = ("auto", "queue", "keyvalue", "metadata", "memory")

#: ``ModelsDirectory`` given here wins over the configuration (``make run``, the image, tests).
MODELS_ENV = "SCINTISEG_MODELS"
#: The ways to name the models folder; the package never guesses it from its own path,
#: so that an installed wheel works wherever it lies.
MODELS_HINT = (
    "name the models folder with ScintiSeg.ModelsDirectory in Orthanc's configuration, "
    f"the {MODELS_ENV} environment variable, or --models on the scintiseg command line"
)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """The ``ScintiSeg`` configuration is invalid; the message names the option."""


@dataclass(frozen=True)
class Config:
    """The validated ``ScintiSeg`` section; field docs are in ``orthanc.json``."""

    enabled: bool
    models_dir: Path
    providers: tuple[str, ...]
    inference_threads: int
    worker_threads: int
    selection: Selection
    series_number: int
    series_description: str
    store_preview: bool
    preview_series_number: int
    preview_series_description: str
    ohif_dir: Path
    track_stability: bool
    result_metadata: str
    recovery_max_studies: int
    recovery_page_size: int
    stop_timeout_s: float
    log_level: str
    #: Orthanc's ``StableAge`` (seconds), read from Orthanc's own configuration
    stable_age_s: float = 60.0
    #: ``ScintiSeg.Anonymization`` (pseudonymization on arrival, off by default)
    anonymization: AnonymizationConfig = AnonymizationConfig()
    #: study metadata holding the physician labels (:mod:`scintiseg.intake.labels`); ``None``
    #: when Orthanc does not declare it in ``UserMetadata`` (labels are then not read)
    labels_metadata: str | None = None
    #: where requests and retries are kept (:mod:`scintiseg.work.workstate`)
    work_state: str = "auto"
    work_metadata: str = "ScintiSegWork"
    #: whether Orthanc's ``UserMetadata`` declares ``work_metadata`` (the metadata backend needs it)
    work_metadata_declared: bool = False
    #: automatic retries of a study that failed for a transient reason, and the first delay
    retry_limit: int = 3
    retry_backoff_s: float = 30.0
    #: libpq connection string of the cluster's work table; ``None``: work stays on this node
    cluster_database: str | None = None
    #: ``cluster_database`` was read from Orthanc's ``PostgreSQL`` section (not ``ClusterDatabase``):
    #: it holds only if Orthanc's index does run on the PostgreSQL plugin (asked at start-up)
    cluster_database_from_index: bool = False
    #: how long a node holds a study without renewing its lease (another node then takes it)
    cluster_lease_s: float = 30.0
    #: this node's name in the cluster (``host:HttpPort`` by default)
    cluster_node: str = ""
    #: how often the registry looks for model folders added, changed or removed (seconds)
    models_poll_s: float = 2.0
    #: segment again, without being asked, the images made by a superseded model version
    reprocess_on_upgrade: bool = False
    #: delete an image's SEG (and preview) of a superseded version once the new one is stored
    delete_superseded_seg: bool = False
    #: the JSON-lines file of the shadow models' agreement records (kept across restarts);
    #: ``None`` in a section parsed alone: :func:`load_config` puts it in Orthanc's storage folder
    shadow_agreement_file: Path | None = None


def strip_json_comments(text: str) -> str:
    """Remove ``//`` and ``/* */`` comments outside strings, as Orthanc's reader does."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_string = False
            i += 1
        elif c == '"':
            in_string = True
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ConfigError("unterminated /* comment */ in the configuration")
            i = end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _option(section: Mapping[str, Any], key: str) -> Any:
    return section.get(key, DEFAULTS[key])


def _int(section: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    value = _option(section, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{SECTION}.{key} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{SECTION}.{key} must lie in [{lo}, {hi}], got {value}")
    return value


def _bool(section: Mapping[str, Any], key: str) -> bool:
    value = _option(section, key)
    if not isinstance(value, bool):
        raise ConfigError(f"{SECTION}.{key} must be true or false, got {value!r}")
    return value


def _folder(value: Any, key: str, root: Path | None) -> Path:
    """A folder option: a non-empty path, relative ones taken from ``root`` (else the working folder)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{SECTION}.{key} must be a folder path, got {value!r}")
    folder = Path(value).expanduser()
    return folder if folder.is_absolute() else (Path.cwd() if root is None else root) / folder


def models_folder(value: str | None, environ: Mapping[str, str], root: Path | None = None) -> Path:
    """The models folder: ``value`` (configuration or ``--models``), else ``$SCINTISEG_MODELS``.

    Raises :class:`ConfigError` naming the three ways when neither is set.
    """
    chosen = value or environ.get(MODELS_ENV)
    if chosen is None or chosen == "":
        raise ConfigError(f"no models folder: {MODELS_HINT}")
    return _folder(chosen, "ModelsDirectory", root)


def _str_list(section: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = _option(section, key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{SECTION}.{key} must be a non-empty list of strings, got {value!r}")
    return tuple(value)


def _regex(section: Mapping[str, Any], key: str) -> re.Pattern[str] | None:
    try:
        return compile_regex(_option(section, key), f"{SECTION}.{key}")
    except RuleError as exc:
        raise ConfigError(str(exc)) from exc


def _check_unknown(section: Mapping[str, Any]) -> None:
    for key in section:
        if key not in DEFAULTS:
            hint = difflib.get_close_matches(key, list(DEFAULTS), n=1)
            more = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"unknown option {SECTION}.{key}{more}")


def parse_section(
    section: Mapping[str, Any] | None,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate a ``ScintiSeg`` section (``None`` means all defaults).

    Relative folders are taken from ``root``: the entry script passes the
    folder that holds it (the repository, ``/opt/scintiseg`` in the image),
    not Orthanc's working folder; without ``root``, from the working folder.
    The models folder has no default (see :data:`MODELS_HINT`): the
    environment variable ``SCINTISEG_MODELS`` overrides ``ModelsDirectory``.
    """
    section = {} if section is None else section
    if not isinstance(section, Mapping):
        raise ConfigError(f"{SECTION} must be a JSON object, got {type(section).__name__}")
    _check_unknown(section)
    environ = os.environ if environ is None else environ

    enabled = _bool(section, "Enabled")
    models_dir = models_folder(environ.get(MODELS_ENV) or _option(section, "ModelsDirectory"), {}, root)

    providers = _str_list(section, "ExecutionProviders")
    for p in providers:
        if not p.endswith("ExecutionProvider"):
            raise ConfigError(
                f"{SECTION}.ExecutionProviders: {p!r} is not an onnxruntime provider name "
                "(e.g. 'CUDAExecutionProvider', 'CPUExecutionProvider')"
            )

    modalities = tuple(m.upper() for m in _str_list(section, "Modalities"))
    sop_classes = _str_list(section, "SopClasses")
    for uid in sop_classes:
        if not _UID.match(uid) or len(uid) > 64:
            raise ConfigError(f"{SECTION}.SopClasses: {uid!r} is not a DICOM UID")

    description = _option(section, "OutputSeriesDescription")
    if not isinstance(description, str) or not description:
        raise ConfigError(f"{SECTION}.OutputSeriesDescription must be a non-empty string")
    try:
        description.format(models="m@1")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{SECTION}.OutputSeriesDescription may only use the placeholder {{models}}: {description!r}"
        ) from exc

    store_preview = _bool(section, "StorePreview")
    preview_description = _option(section, "PreviewSeriesDescription")
    if (
        not isinstance(preview_description, str)
        or not preview_description
        or len(preview_description) > 64
        or "\\" in preview_description
    ):
        raise ConfigError(
            f"{SECTION}.PreviewSeriesDescription must be 1 to 64 characters without a backslash, "
            f"got {preview_description!r}"
        )
    ohif_dir = _folder(_option(section, "OhifDirectory"), "OhifDirectory", root)
    track = _bool(section, "TrackStability")

    metadata = _option(section, "ResultMetadata")
    if not isinstance(metadata, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", metadata):
        raise ConfigError(f"{SECTION}.ResultMetadata must be a metadata name, got {metadata!r}")

    stop_timeout = _option(section, "StopTimeoutSeconds")
    if isinstance(stop_timeout, bool) or not isinstance(stop_timeout, int | float) or stop_timeout <= 0:
        raise ConfigError(f"{SECTION}.StopTimeoutSeconds must be a positive number, got {stop_timeout!r}")

    work_state = _option(section, "WorkState")
    if work_state not in WORK_STATES:
        raise ConfigError(f"{SECTION}.WorkState must be one of {WORK_STATES}, got {work_state!r}")
    work_metadata = _option(section, "WorkMetadata")
    if not isinstance(work_metadata, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", work_metadata):
        raise ConfigError(f"{SECTION}.WorkMetadata must be a metadata name, got {work_metadata!r}")
    if work_metadata == metadata:
        raise ConfigError(f"{SECTION}.WorkMetadata must differ from ResultMetadata ({metadata!r})")
    backoff = _option(section, "RetryBackoffSeconds")
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not 0 <= backoff <= 86400:
        raise ConfigError(f"{SECTION}.RetryBackoffSeconds must be a number of seconds in [0, 86400], got {backoff!r}")

    level = _option(section, "LogLevel")
    if not isinstance(level, str) or level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"{SECTION}.LogLevel must be one of {_LOG_LEVELS}, got {level!r}")

    try:
        anonymization = parse_anonymization(section.get("Anonymization"), environ)
    except ValueError as exc:
        raise ConfigError(f"{SECTION}.Anonymization: {exc}") from exc

    agreement_file = _option(section, "ShadowAgreementFile")
    if agreement_file is not None and (not isinstance(agreement_file, str) or not agreement_file):
        raise ConfigError(f"{SECTION}.ShadowAgreementFile must be a file path or null, got {agreement_file!r}")

    labels_metadata = _option(section, "LabelsMetadata")
    if not isinstance(labels_metadata, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", labels_metadata):
        raise ConfigError(f"{SECTION}.LabelsMetadata must be a metadata name, got {labels_metadata!r}")

    return Config(
        anonymization=anonymization,
        labels_metadata=labels_metadata,
        enabled=enabled,
        models_dir=models_dir,
        providers=providers,
        inference_threads=_int(section, "InferenceThreads", 0, 256),
        worker_threads=_int(section, "WorkerThreads", 1, 16),
        selection=Selection(
            modalities=modalities,
            sop_classes=sop_classes,
            series_description=_regex(section, "SeriesDescriptionRegex"),
            radiopharmaceutical=_regex(section, "RadiopharmaceuticalRegex"),
        ),
        series_number=_int(section, "OutputSeriesNumber", 1, 2**31 - 1),
        series_description=description,
        store_preview=store_preview,
        preview_series_number=_int(section, "PreviewSeriesNumber", 1, 2**31 - 1),
        preview_series_description=preview_description,
        ohif_dir=ohif_dir,
        track_stability=track,
        result_metadata=metadata,
        recovery_max_studies=_int(section, "RecoveryScanMaxStudies", 0, 10**9),
        recovery_page_size=_int(section, "RecoveryScanPageSize", 1, 10000),
        stop_timeout_s=float(stop_timeout),
        log_level=level.upper(),
        work_state=work_state,
        work_metadata=work_metadata,
        retry_limit=_int(section, "RetryLimit", 0, 100),
        retry_backoff_s=float(backoff),
        models_poll_s=float(_int(section, "ModelsPollSeconds", 1, 3600)),
        reprocess_on_upgrade=_bool(section, "ReprocessOnUpgrade"),
        delete_superseded_seg=_bool(section, "DeleteSupersededSeg"),
        shadow_agreement_file=None if agreement_file is None else _folder(agreement_file, "ShadowAgreementFile", root),
    )


#: The shadow agreement file's name in Orthanc's storage folder (``ShadowAgreementFile`` null).
AGREEMENT_FILE_NAME = "scintiseg-shadow-agreement.jsonl"


def load_config(
    orthanc_config: Mapping[str, Any],
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Parse the whole Orthanc configuration: the ``ScintiSeg`` section and what it needs.

    The result metadata must be declared in Orthanc's ``UserMetadata`` (Orthanc
    refuses to store undeclared metadata), so that is checked here too.
    """
    config = parse_section(orthanc_config.get(SECTION), root=root, environ=environ)
    stable_age = orthanc_config.get("StableAge", 60)
    if isinstance(stable_age, bool) or not isinstance(stable_age, int | float) or stable_age < 0:
        raise ConfigError(f'Orthanc\'s "StableAge" must be a number of seconds, got {stable_age!r}')
    declared = orthanc_config.get("UserMetadata") or {}
    work_index = declared.get(config.work_metadata) if isinstance(declared, Mapping) else None
    work_declared = isinstance(work_index, int) and not isinstance(work_index, bool) and 1024 <= work_index <= 65535
    if config.work_state == "metadata" and not work_declared:
        raise ConfigError(
            f'{SECTION}.WorkState "metadata" needs the metadata "{config.work_metadata}" declared in '
            f'"UserMetadata" with an index in [1024, 65535]'
        )
    config = dataclasses.replace(config, stable_age_s=float(stable_age), work_metadata_declared=work_declared)
    if config.shadow_agreement_file is None:
        storage = orthanc_config.get("StorageDirectory") or "OrthancStorage"  # Orthanc's default
        if not isinstance(storage, str):
            raise ConfigError(f'Orthanc\'s "StorageDirectory" must be a folder path, got {storage!r}')
        # a relative storage folder is taken from Orthanc's working folder
        config = dataclasses.replace(config, shadow_agreement_file=Path(storage).expanduser().absolute()
                                     / AGREEMENT_FILE_NAME)
    if not isinstance(declared, Mapping) or config.labels_metadata not in declared:
        if "LabelsMetadata" in (orthanc_config.get(SECTION) or {}):
            raise ConfigError(
                f'Orthanc must declare the metadata "{config.labels_metadata}" of {SECTION}.LabelsMetadata '
                'in "UserMetadata" with an index in [1024, 65535]'
            )
        config = dataclasses.replace(config, labels_metadata=None)  # labels are not read
    config = dataclasses.replace(config, **cluster_options(orthanc_config))
    index = declared.get(config.result_metadata) if isinstance(declared, Mapping) else None
    if isinstance(index, bool) or not isinstance(index, int) or not 1024 <= index <= 65535:
        raise ConfigError(
            f'Orthanc must declare the metadata "{config.result_metadata}" in "UserMetadata" '
            f'with an index in [1024, 65535], e.g. "UserMetadata": {{"{config.result_metadata}": 4242}}'
        )
    return config


def _libpq_quote(value: Any) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def orthanc_postgresql_uri(orthanc_config: Mapping[str, Any]) -> str | None:
    """The libpq connection string of Orthanc's PostgreSQL index, ``None`` if its index is SQLite.

    ``PostgreSQL.ConnectionUri`` when set, else the Host/Port/Database/Username/Password
    options of the orthanc-postgresql plugin (its defaults included).
    """
    pg = orthanc_config.get("PostgreSQL")
    if not isinstance(pg, Mapping) or pg.get("EnableIndex") is not True:
        return None
    uri = pg.get("ConnectionUri")
    if isinstance(uri, str) and uri:
        return uri
    keys = {"host": pg.get("Host", "localhost"), "port": pg.get("Port", 5432),
            "dbname": pg.get("Database", "orthanc"), "user": pg.get("Username"), "password": pg.get("Password")}
    return " ".join(f"{k}={_libpq_quote(v)}" for k, v in keys.items() if v not in (None, ""))


def cluster_options(orthanc_config: Mapping[str, Any]) -> dict[str, Any]:
    """``ClusterDatabase`` (default: Orthanc's own PostgreSQL index), lease and node name.

    ``ClusterDatabase`` ``false`` keeps the work on each node even on a PostgreSQL index.
    A database read from the ``PostgreSQL`` section is used only if Orthanc's index does run
    on the PostgreSQL plugin (:func:`scintiseg.app.startup.make_worker` asks Orthanc).
    """
    section = orthanc_config.get(SECTION) or {}
    database = _option(section, "ClusterDatabase")
    from_index = database is None
    if database is None:
        database = orthanc_postgresql_uri(orthanc_config)
    elif database is False:
        database = None
    elif not isinstance(database, str) or not database:
        raise ConfigError(f"{SECTION}.ClusterDatabase must be a libpq URI, false or null, got {database!r}")
    lease = _option(section, "ClusterLeaseSeconds")
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not 1 <= lease <= 3600:
        raise ConfigError(f"{SECTION}.ClusterLeaseSeconds must be a number of seconds in [1, 3600], got {lease!r}")
    node = _option(section, "ClusterNodeName")
    if node is None:
        import socket

        node = f"{socket.gethostname()}:{orthanc_config.get('HttpPort', 8042)}"
    if not isinstance(node, str) or not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,63}", node):
        raise ConfigError(f"{SECTION}.ClusterNodeName must be 1 to 63 of A-Z a-z 0-9 _ . : @ -, got {node!r}")
    return {
        "cluster_database": database,
        "cluster_database_from_index": from_index and database is not None,
        "cluster_lease_s": float(lease),
        "cluster_node": node,
    }
