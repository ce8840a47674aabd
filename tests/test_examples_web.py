"""examples/flask_app.py and examples/fastapi_app.py, driven by their test clients."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sample_jobs  # noqa: F401  (its @every registers before the registry is saved)

pytest.importorskip("sqlalchemy")

import tinydj

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def examples_path() -> Iterator[None]:
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))


def _example(name: str) -> ModuleType:
    module = __import__(name)
    return module


def _drop(module: Any) -> None:
    module.Base.metadata.drop_all(module.engine)
    module.engine.dispose()
    tinydj.get_config().store.close()
    tinydj.get_config().database.close()


def test_flask_order_and_receipt_commit_together(db_url: str, examples_path: None) -> None:
    pytest.importorskip("flask")
    flask_app = _example("flask_app")
    app = flask_app.create_app(db_url)
    try:
        client = app.test_client()
        created = client.post("/orders", json={"item": "book"})
        assert created.status_code == 201
        job_id = created.get_json()["job"]
        refused = client.post("/orders", json={"item": ""})
        assert refused.status_code == 400
        assert [j.id for j in tinydj.list_jobs()] == [job_id]  # the refused one left nothing
        assert client.get(f"/jobs/{job_id}").get_json() == {"status": "READY", "value": None}
        assert tinydj.Worker().work_off() == (1, 0)
        assert client.get(f"/jobs/{job_id}").get_json() == {
            "status": "SUCCESSFUL",
            "value": "receipt for book",
        }
        from sqlalchemy.orm import Session

        with Session(flask_app.engine) as session:
            orders = session.query(flask_app.Order).all()
        assert [(o.item, o.receipt_sent) for o in orders] == [("book", True)]
    finally:
        _drop(flask_app)


def test_fastapi_signup_and_welcome_commit_together(db_url: str, examples_path: None) -> None:
    pytest.importorskip("fastapi")
    # Starlette's TestClient imports httpx2 (or, in older releases, httpx).
    TestClient = pytest.importorskip("fastapi.testclient").TestClient

    fastapi_app = _example("fastapi_app")
    api = fastapi_app.create_app(db_url)
    try:
        with TestClient(api) as client:
            created = client.post("/signups", json={"email": "ann@example.com"})
            assert created.status_code == 201
            job_id = created.json()["job"]
            assert client.post("/signups", json={"email": "nobody"}).status_code == 422
            assert [j.id for j in tinydj.list_jobs()] == [job_id]
            assert tinydj.Worker().work_off() == (1, 0)
            assert client.get(f"/jobs/{job_id}").json() == {
                "status": "SUCCESSFUL",
                "value": {"sent_to": "ann@example.com"},
            }
        from sqlalchemy.orm import Session

        with Session(fastapi_app.engine) as session:
            emails = [s.email for s in session.query(fastapi_app.Signup).all()]
        assert emails == ["ann@example.com"]
    finally:
        _drop(fastapi_app)
