"""The ledger's own connections (committer, loop appenders, read models, probes)
keep a connect timeout the application set in the environment (``PGCONNECT_TIMEOUT``,
read by libpq) or in the URL; 5 s only when neither says."""

from __future__ import annotations

import psycopg
import pytest

from ledger.adapters.pg_appenders import direct_connection_kwargs
from tests.conftest import require_postgres


def test_the_environments_connect_timeout_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    assert direct_connection_kwargs({})["connect_timeout"] == 5
    assert direct_connection_kwargs({"connect_timeout": "9"})["connect_timeout"] == "9"
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "17")
    assert "connect_timeout" not in direct_connection_kwargs({})
    assert direct_connection_kwargs({"connect_timeout": "9"})["connect_timeout"] == "9"


@pytest.mark.postgres
def test_a_direct_connection_uses_the_environments_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = require_postgres()
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "17")
    settings = psycopg.conninfo.conninfo_to_dict(url)
    with psycopg.connect(**direct_connection_kwargs(settings)) as conn:
        assert conn.info.get_parameters().get("connect_timeout") == "17"
