"""Checking HTTP answers against ``docs/openapi.yaml`` (unit tests on ``rest.dispatch``,
integration tests on the live server).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


def load_spec() -> dict[str, Any]:
    return dict(yaml.safe_load(OPENAPI.read_text(encoding="utf-8")))


def deref(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def spec_path(spec: dict[str, Any], path: str) -> str:
    """The OpenAPI path template matching a concrete path."""
    path = path.split("?", 1)[0]
    for template in spec["paths"]:
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
        if re.fullmatch(pattern, path):
            return template
    raise AssertionError(f"{path} is not in docs/openapi.yaml")


def check_answer(spec: dict[str, Any], method: str, path: str, status: int, content_type: str, body: bytes) -> None:
    """The status is documented for the route and the body fits the documented schema."""
    operation = spec["paths"][spec_path(spec, path)].get(method.lower())
    if operation is None:
        assert status == 405, f"{method} {path}: undocumented method answered {status}"
        return
    documented = operation["responses"]
    assert str(status) in documented, f"{method} {path}: {status} not documented"
    response = deref(spec, documented[str(status)])
    content = response.get("content")
    if content is None:
        return
    mime = content_type.split(";")[0].strip()
    assert mime in content, f"{content_type} not in {list(content)}"
    if mime == "application/json":
        schema = deref(spec, content["application/json"]["schema"])
        validator = OAS30Validator({**schema, "components": spec["components"]})
        validator.validate(json.loads(body))


def check_against_spec(spec: dict[str, Any], method: str, path: str, answer: Any) -> None:
    """:func:`check_answer` for a :class:`scintiseg.api.routes.Response`."""
    check_answer(spec, method, path, answer.status, answer.content_type, answer.body)
