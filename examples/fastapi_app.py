"""FastAPI + SQLAlchemy: enqueue inside the request's transaction.

Run::

    export SHOP_DATABASE_URL=sqlite:///shop.sqlite3
    uvicorn fastapi_app:app            # from examples/
    tinydj work --database "$SHOP_DATABASE_URL" --app fastapi_app

Each request gets a Session in a transaction (the ``transaction`` dependency);
``tinydj.using(session)`` writes the job with the request's other rows, so a
failed request leaves no job behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import Integer, String, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import tinydj
from tinydj import results

DATABASE_URL = os.environ.get("SHOP_DATABASE_URL", "sqlite:///shop.sqlite3")


class Base(DeclarativeBase):
    pass


class Signup(Base):
    __tablename__ = "fastapi_signups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(200))


class SignupIn(BaseModel):
    email: str


engine: Engine = create_engine(tinydj.sqlalchemy_url(DATABASE_URL))


@results.keep("1d")
@tinydj.job(queue="mail")
def send_welcome(email: str) -> dict[str, str]:
    """Runs in the worker."""
    return {"sent_to": email}


def transaction() -> Iterator[Session]:
    """A Session whose transaction commits when the request succeeds."""
    with Session(engine) as session, session.begin():
        yield session


def create_app(database_url: str | None = None) -> FastAPI:
    """The FastAPI app; ``database_url`` replaces $SHOP_DATABASE_URL (tests)."""
    global engine
    url = database_url or DATABASE_URL
    engine = create_engine(tinydj.sqlalchemy_url(url))
    Base.metadata.create_all(engine)
    tinydj.configure(url)
    tinydj.create_tables()
    api = FastAPI()

    @api.post("/signups", status_code=201)
    def signup(body: SignupIn, session: Annotated[Session, Depends(transaction)]) -> dict[str, int]:
        row = Signup(email=body.email)
        session.add(row)
        session.flush()
        with tinydj.using(session):
            job = send_welcome.send_later(body.email)
        if "@" not in body.email:
            raise HTTPException(422, "not an email address")  # rolls back row and job
        return {"signup": row.id, "job": job.id}

    @api.get("/jobs/{job_id}")
    def job_status(job_id: int) -> dict[str, Any]:
        kept = results.get(job_id)
        return {"status": results.status(job_id), "value": kept.value if kept else None}

    return api


app = create_app() if os.environ.get("SHOP_DATABASE_URL") else None
