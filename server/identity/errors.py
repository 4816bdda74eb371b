"""Exceptions raised by the cloud instance-identity verifiers.

Every verifier in this package promises that untrusted input can only ever
produce one of these two exceptions, so the HTTP layer can map them without
a catch-all:

* ``InvalidIdentity``  -> 401 ``"Invalid AWS identity."`` / ``"Invalid Azure
  identity."`` / ``"Invalid GCP identity."`` (message chosen by the route).
* ``MalformedClaims``  -> 400 ``"Error decoding JWT claims."`` (GCP only; it is
  a subclass of ``InvalidIdentity``, so catch it first).

``detail`` is a short, fixed phrase written by this package. It never embeds
attacker-controlled text or parser internals, so it is safe to return as the
response ``detail``. The underlying library exception, if any, is chained as
``__cause__`` for server-side logging only.
"""

from __future__ import annotations


class InvalidIdentity(Exception):
    """The presented instance-identity credential must not be trusted."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class MalformedClaims(InvalidIdentity):
    """A correctly signed GCP token whose claims do not have the expected shape.

    Coder answers this case with 400 rather than 401, so it gets its own type.
    """
