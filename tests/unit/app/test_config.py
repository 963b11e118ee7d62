"""The ScintiSeg configuration section: defaults, validation, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scintiseg.app.config import (
    DEFAULTS,
    MODELS_ENV,
    MODELS_HINT,
    NM_IMAGE_STORAGE,
    ConfigError,
    load_config,
    models_folder,
    parse_section,
    strip_json_comments,
)

ROOT = Path("/opt/app")


def parse(section: dict[str, Any] | None, **env: str) -> Any:
    """``section`` with a models folder (there is no default one) unless it names its own."""
    return parse_section({"ModelsDirectory": "models", **(section or {})}, root=ROOT, environ=env)


def test_an_empty_section_gives_the_documented_defaults() -> None:
    cfg = parse(None)
    assert cfg.enabled and cfg.worker_threads == 1
    assert cfg.models_dir == ROOT / "models"
    assert cfg.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert cfg.selection.modalities == ("NM",) and NM_IMAGE_STORAGE in cfg.selection.sop_classes
    assert cfg.selection.series_description is None and cfg.selection.radiopharmaceutical is None
    assert cfg.series_number == 9901 and cfg.result_metadata == "ScintiSegResult"


def test_config_is_frozen() -> None:
    cfg = parse(None)
    with pytest.raises(AttributeError):
        cfg.worker_threads = 3  # type: ignore[misc]


def test_models_dir_absolute_relative_and_env() -> None:
    assert parse({"ModelsDirectory": "/srv/m"}).models_dir == Path("/srv/m")
    assert parse({"ModelsDirectory": "x/y"}).models_dir == ROOT / "x/y"
    assert parse({"ModelsDirectory": "x"}, **{MODELS_ENV: "/tmp/m"}).models_dir == Path("/tmp/m")
    assert parse_section(None, root=ROOT, environ={MODELS_ENV: "m"}).models_dir == ROOT / "m"
    # without a root (the command line), relative folders are the working folder's
    assert parse_section({"ModelsDirectory": "m"}, environ={}).models_dir == Path.cwd() / "m"


def test_the_models_folder_has_no_default_and_the_error_names_the_three_ways() -> None:
    assert DEFAULTS["ModelsDirectory"] is None
    for section in (None, {"ModelsDirectory": None}, {"ModelsDirectory": ""}):
        with pytest.raises(ConfigError) as info:
            parse_section(section, root=ROOT, environ={})
        message = str(info.value)
        assert MODELS_HINT in message
        assert all(way in message for way in ("ScintiSeg.ModelsDirectory", MODELS_ENV, "--models"))
    # the command line's order: --models, else the environment
    assert models_folder("/a", {MODELS_ENV: "/b"}) == Path("/a")
    assert models_folder(None, {MODELS_ENV: "/b"}) == Path("/b")
    with pytest.raises(ConfigError, match="no models folder"):
        models_folder(None, {})


def test_rules_are_compiled() -> None:
    cfg = parse({"SeriesDescriptionRegex": "(?i)thyr", "RadiopharmaceuticalRegex": "Tc", "Modalities": ["nm"]})
    assert cfg.selection.series_description is not None
    assert cfg.selection.series_description.search("Thyroid ANT")
    assert cfg.selection.modalities == ("NM",)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"WorkerThread": 2}, "did you mean 'WorkerThreads'"),
        ({"WorkerThreads": 0}, "WorkerThreads must lie in [1, 16]"),
        ({"WorkerThreads": "2"}, "WorkerThreads must be an integer"),
        ({"Enabled": "yes"}, "Enabled must be true or false"),
        ({"SeriesDescriptionRegex": "(thyr"}, "SeriesDescriptionRegex is not a valid regular expression"),
        ({"SopClasses": ["NM"]}, "is not a DICOM UID"),
        ({"SopClasses": []}, "SopClasses must be a non-empty list"),
        ({"ExecutionProviders": ["CUDA"]}, "is not an onnxruntime provider name"),
        ({"OutputSeriesDescription": "ScintiSeg {model}"}, "placeholder {models}"),
        ({"OutputSeriesNumber": 0}, "OutputSeriesNumber must lie in"),
        ({"LogLevel": "LOUD"}, "LogLevel must be one of"),
        ({"ResultMetadata": "no spaces"}, "ResultMetadata must be a metadata name"),
        ({"StopTimeoutSeconds": 0}, "StopTimeoutSeconds must be a positive number"),
    ],
)
def test_errors_name_the_option(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(section)
    assert message in str(info.value)


def test_section_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match="must be a JSON object"):
        parse_section(["x"], root=ROOT, environ={})  # type: ignore[arg-type]


def test_load_config_requires_the_metadata_declaration() -> None:
    with pytest.raises(ConfigError, match='declare the metadata "ScintiSegResult" in "UserMetadata"'):
        load_config({"ScintiSeg": {"ModelsDirectory": "m"}}, root=ROOT, environ={})
    cfg = load_config({"UserMetadata": {"ScintiSegResult": 4242}}, root=ROOT, environ={MODELS_ENV: "/m"})
    assert cfg.result_metadata == "ScintiSegResult"


def test_every_default_is_valid() -> None:
    parse({**DEFAULTS, "ModelsDirectory": "models"})  # the one option without a default


def test_strip_json_comments_keeps_strings() -> None:
    text = '{ "a": "http://x//y", /* block\n comment */ "b": 1 // end\n}'
    assert strip_json_comments(text).replace(" ", "").replace("\n", "") == '{"a":"http://x//y","b":1}'
    with pytest.raises(ConfigError):
        strip_json_comments("/* never closed")
