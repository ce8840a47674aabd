"""Flask + SQLAlchemy: an order and the job that mails its receipt commit together.

Run the app and a worker on the same database::

    export SHOP_DATABASE_URL=sqlite:///shop.sqlite3
    flask --app examples/flask_app.py run
    tinydj work --database "$SHOP_DATABASE_URL" --app flask_app   # from examples/

``POST /orders {"item": "book"}`` stores the order and enqueues
``send_receipt`` inside the same SQLAlchemy transaction (``tinydj.using``):
if the request fails, neither the order nor the job is left behind.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, abort, request
from sqlalchemy import Boolean, Integer, String, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import tinydj
from tinydj import results

DATABASE_URL = os.environ.get("SHOP_DATABASE_URL", "sqlite:///shop.sqlite3")


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "flask_orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item: Mapped[str] = mapped_column(String(100))
    receipt_sent: Mapped[bool] = mapped_column(Boolean, default=False)


engine: Engine = create_engine(tinydj.sqlalchemy_url(DATABASE_URL))


@results.keep("1d")
@tinydj.job(queue="mail", max_attempts=3)
def send_receipt(order_id: int) -> str:
    """Runs in the worker: "mails" the receipt and marks the order."""
    with Session(engine) as session, session.begin():
        order = session.get(Order, order_id)
        if order is None:
            raise LookupError(f"order {order_id} is gone")
        order.receipt_sent = True
        return f"receipt for {order.item}"


def create_app(database_url: str | None = None) -> Flask:
    """The Flask app; ``database_url`` replaces $SHOP_DATABASE_URL (tests)."""
    global engine
    url = database_url or DATABASE_URL
    engine = create_engine(tinydj.sqlalchemy_url(url))
    Base.metadata.create_all(engine)
    tinydj.configure(url)  # workers and job lookups use tinydj's own connection
    tinydj.create_tables()
    app = Flask(__name__)

    @app.post("/orders")
    def create_order() -> tuple[dict[str, Any], int]:
        data = request.get_json(silent=True) or {}
        with Session(engine) as session, session.begin():
            order = Order(item=str(data.get("item", "")))
            session.add(order)
            session.flush()  # the order gets its id
            with tinydj.using(session):
                job = send_receipt.send_later(order.id)
            if not order.item:
                abort(400, "an order needs an item")  # rolls back the order and its job
            return {"order": order.id, "job": job.id}, 201

    @app.get("/jobs/<int:job_id>")
    def job_status(job_id: int) -> dict[str, Any]:
        kept = results.get(job_id)
        return {
            "status": results.status(job_id),
            "value": kept.value if kept else None,
        }

    return app
