"""The cluster options: the work table's database defaults to Orthanc's own PostgreSQL index."""

from __future__ import annotations

from typing import Any

import pytest
from support.fake_gateway import FakeGateway

from scintiseg.app.config import ConfigError, load_config
from scintiseg.app.startup import POSTGRESQL_INDEX, cluster_database

BASE: dict[str, Any] = {"UserMetadata": {"ScintiSegResult": 4242}, "HttpPort": 8043}


def load(**orthanc: Any) -> Any:
    section = {"ModelsDirectory": "models", **orthanc.pop("ScintiSeg", {})}
    return load_config({**BASE, **orthanc, "ScintiSeg": section}, environ={})


def test_sqlite_keeps_the_work_on_the_node() -> None:
    config = load()
    assert config.cluster_database is None
    assert config.cluster_lease_s == 30.0 and config.cluster_node.endswith(":8043")


def test_orthanc_postgresql_index_makes_a_cluster() -> None:
    uri = "postgresql://orthanc:secret@db:5432/orthanc"
    assert load(PostgreSQL={"EnableIndex": True, "ConnectionUri": uri}).cluster_database == uri
    assert load(PostgreSQL={"EnableIndex": False, "ConnectionUri": uri}).cluster_database is None


def test_a_database_from_the_postgresql_section_holds_only_on_the_postgresql_index(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Orthanc's own integration tests run on SQLite with a PostgreSQL section for another run."""
    uri = "postgresql://orthanc:secret@db:5432/orthanc"
    config = load(PostgreSQL={"EnableIndex": True, "ConnectionUri": uri})
    assert config.cluster_database_from_index
    assert cluster_database(config, FakeGateway(index_plugin=POSTGRESQL_INDEX)) == uri
    assert cluster_database(config, FakeGateway(index_plugin=None)) is None
    assert "runs on its built-in SQLite: this node works alone" in caplog.text
    assert cluster_database(config, FakeGateway(index_plugin="mysql-index")) is None
    # ClusterDatabase is taken as given: Orthanc is not asked
    explicit = load(ScintiSeg={"ClusterDatabase": uri})
    assert not explicit.cluster_database_from_index
    asked = FakeGateway(fail_on={"database_plugin": AssertionError("asked")})
    assert cluster_database(explicit, asked) == uri


def test_the_plugins_separate_options_become_a_quoted_conninfo() -> None:
    config = load(PostgreSQL={"EnableIndex": True, "Host": "db", "Port": 5433, "Database": "pacs",
                              "Username": "o", "Password": "it's"})
    assert config.cluster_database == "host='db' port='5433' dbname='pacs' user='o' password='it\\'s'"


def test_explicit_database_false_and_names() -> None:
    pg = {"EnableIndex": True, "ConnectionUri": "postgresql://a@b/c"}
    section = {"ClusterDatabase": "postgresql://x@y/z", "ClusterLeaseSeconds": 5, "ClusterNodeName": "n-1"}
    config = load(PostgreSQL=pg, ScintiSeg=section)
    assert (config.cluster_database, config.cluster_lease_s, config.cluster_node) == ("postgresql://x@y/z", 5.0, "n-1")
    assert load(PostgreSQL=pg, ScintiSeg={"ClusterDatabase": False}).cluster_database is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"ClusterDatabase": ""}, "ClusterDatabase"),
        ({"ClusterLeaseSeconds": 0}, "ClusterLeaseSeconds"),
        ({"ClusterLeaseSeconds": True}, "ClusterLeaseSeconds"),
        ({"ClusterNodeName": "a b"}, "ClusterNodeName"),
    ],
)
def test_bad_cluster_options_name_the_option(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(ScintiSeg=section)
