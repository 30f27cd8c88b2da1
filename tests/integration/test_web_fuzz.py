"""Bounded API fuzzing (schemathesis) of the web app's OpenAPI, as a logged-in Airflow user.

Every generated request (valid and invalid values, odd strings, huge numbers) must get an answer
that is not a server error; the database is the real one, filled with the web test season.
"""

from __future__ import annotations

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from web_data import airflow_token, build, empty_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def token(pg_dsn: str, airflow_db: str) -> str:
    empty_database(pg_dsn)
    with psycopg.connect(pg_dsn) as conn:
        build(conn)
    return airflow_token()


@pytest.fixture(scope="module")
def web_schema(token: str):
    from cbmflow.airflow_adapter import web_auth
    from cbmflow.web import create_app

    app = create_app(*web_auth())
    return schemathesis.openapi.from_asgi("/openapi.json", app, headers={"Authorization": f"Bearer {token}"})


def test_api_never_answers_with_a_server_error(web_schema, token: str) -> None:
    from hypothesis import given

    auth = {"Authorization": f"Bearer {token}"}
    failures: dict[str, str] = {}
    statuses: list[int] = []
    operations = [r.ok() for r in web_schema.get_all_operations()]
    assert len(operations) >= 14
    for op in operations:

        @settings(max_examples=8, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call_and_validate(headers=auth, checks=[not_a_server_error])
            statuses.append(response.status_code)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collected and reported per operation
            failures[op.label] = str(exc)[:1500]
    # the run exercised every operation, with accepted and rejected requests alike
    assert len(statuses) >= 5 * len(operations) and 200 in statuses and 422 in statuses, sorted(set(statuses))
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
