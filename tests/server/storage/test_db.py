"""Engines and connections (server/storage/db.py): what an error carries."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from server.storage.prepared import Prepared
from server.storage.users import User

SECRET = "s3cret-value-in-a-parameter"


def test_errors_never_carry_the_parameters(db, clock) -> None:
    users = User.__table__
    row = {
        "id": uuid.uuid4(),
        "username": "dup",
        "email": SECRET,
        "role": "member",
        "created_at": clock.now(),
        "updated_at": clock.now(),
    }
    with db.write() as conn:
        conn.execute(users.insert(), row)
    with pytest.raises(sa.exc.IntegrityError) as err, db.write() as conn:
        conn.execute(users.insert(), {**row, "username": "other"})
    assert SECRET not in str(err.value) and "hidden" in str(err.value)
    # The prepared statements wrap driver errors the same way.
    duplicate = Prepared(users.insert().values(row | {"username": "x"}).returning(users.c.id))
    with pytest.raises(sa.exc.IntegrityError) as err, db.write() as conn:
        duplicate.first(conn, {})
    assert SECRET not in str(err.value) and "hidden" in str(err.value)
