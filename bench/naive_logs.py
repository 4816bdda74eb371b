"""The naive baseline for log ingestion: a Flask handler on the same WSGI
server that inserts each batch with SQLModel's ORM (``add_all``) into SQLite."""

from __future__ import annotations

import datetime as dt
import sys
import uuid

from flask import Flask, Response, request
from sqlmodel import Field, Session, SQLModel, create_engine

from rest_facade.serve import serve_wsgi


class NaiveLog(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    agent_id: uuid.UUID
    created_at: dt.datetime
    output: str = Field(max_length=1024)
    level: str
    log_source_id: uuid.UUID


def create_naive_app(db_path: str) -> Flask:
    engine = create_engine(f"sqlite:///{db_path}", connect_args={"check_same_thread": False})
    SQLModel.metadata.create_all(engine)
    app = Flask(__name__)
    agent, source = uuid.uuid4(), uuid.uuid4()

    @app.patch("/logs")
    def logs() -> Response:
        body = request.get_json()
        now = dt.datetime.now(dt.UTC)
        with Session(engine) as session:
            session.add_all(
                NaiveLog(
                    agent_id=agent,
                    created_at=now,
                    output=item["output"][:1024],
                    level=item.get("level") or "info",
                    log_source_id=source,
                )
                for item in body["logs"]
            )
            session.commit()
        return Response("null", mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("{}", mimetype="application/json")

    return app


if __name__ == "__main__":
    serve_wsgi(create_naive_app(sys.argv[2]), sys.argv[1])
