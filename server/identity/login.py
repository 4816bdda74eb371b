"""Instance-identity login: verify a cloud credential, choose the agent, mint its token.

Serves ``agentplane.identity.v1.InstanceIdentityService`` —
``AuthenticateAWS``, ``AuthenticateAzure`` and ``AuthenticateGoogle``
(REST ``POST /api/v2/workspaceagents/{aws,azure,google}-instance-identity``).

Three steps, each with Coder's answers:

1. The request's required fields (``validate:"required"`` in Coder's SDK types)
   -> 400 ``Validation failed.`` with go-playground style validations. Checked
   here, not in the facade, so gRPC callers get the same answer.
2. The credential, against trust material loaded once at start-up
   (:func:`load_identity_trust`) -> 401 ``Invalid AWS identity.`` /
   ``Invalid Azure identity.`` / ``Invalid GCP identity.`` with the verifier's
   fixed-phrase detail; a signed GCP token without the instance-id claim ->
   400 ``Error decoding JWT claims.``.
3. The agent, by Coder's newest rule (``handleAuthInstanceID`` after PR
   #24325): among root agents with that instance id whose build is the latest
   of a live workspace, the one named ``agent_name`` (trimmed; blank = unset)
   or the only one -> 404 / 404 / 409 otherwise.

Deliberate difference: Coder returns the agent's one long-lived token. Agent
tokens are stored here only as SHA-256, so each login mints a fresh token and
replaces the stored hash: a login rotates the agent's token (the previous one
stops working), and the next build invalidates it like any agent token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from server.auth import hash_agent_token, new_agent_token
from server.clock import Clock
from server.config import Settings
from server.errors import Conflict, InvalidArgument, NotFound, Unauthenticated
from server.identity.aws import verify_aws
from server.identity.azure import verify_azure
from server.identity.errors import InvalidIdentity, MalformedClaims
from server.identity.google import InMemoryReplayCache, ReplayCache, verify_google
from server.identity.trust import (
    default_aws_certs,
    default_azure_roots,
    load_google_keys,
    load_pem_certificates,
)
from server.storage import agents as agent_store
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

INVALID_AWS = "Invalid AWS identity."
INVALID_AZURE = "Invalid Azure identity."
INVALID_GCP = "Invalid GCP identity."
MALFORMED_CLAIMS = "Error decoding JWT claims."
VALIDATION_FAILED = "Validation failed."
GOOGLE_NOT_CONFIGURED = (
    "No Google signing keys are configured on this server "
    "(--google-instance-identity-certs / AGENTPLANE_GOOGLE_INSTANCE_IDENTITY_CERTS)."
)
# Agent names are at most 64 characters (the column), so a longer requested
# name can never match; quoting it back whole would let one request put
# megabytes into an error message (and the gRPC status trailer).
MAX_QUOTED_NAME = 64

# Go's unicode.IsSpace set, which strings.TrimSpace uses on agent_name.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
_GO_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t",
               "\v": r"\v", "\\": r"\\", '"': r"\""}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class IdentityTrust:
    """Everything the verifiers trust, read once at start-up."""

    aws_certs: tuple[x509.Certificate, ...]
    # None: pendingTime is not checked (Coder's behaviour).
    aws_max_age: timedelta | None
    azure_roots: tuple[x509.Certificate, ...]
    azure_intermediates: tuple[x509.Certificate, ...]
    azure_fetch_intermediates: bool
    # Empty: GCP login is not configured and always refused.
    google_keys: Mapping[str, rsa.RSAPublicKey]
    google_audience: str
    # None: a token may be presented again until it expires (Coder's behaviour).
    google_replay_cache: ReplayCache | None


def _rsa_only(certs: list[x509.Certificate], source: str) -> tuple[x509.Certificate, ...]:
    for index, cert in enumerate(certs, start=1):
        if not isinstance(cert.public_key(), rsa.RSAPublicKey):
            # AWS signs with RSA only; a non-RSA entry could never verify and
            # would otherwise surface as a 500 on the first login.
            raise ValueError(f"{source}: certificate #{index} does not carry an RSA key")
    return tuple(certs)


def load_identity_trust(settings: Settings, clock: Clock) -> IdentityTrust:
    """Reads the configured trust files; ``ValueError`` names the bad file."""
    aws_path = settings.aws_instance_identity_certs
    aws = load_pem_certificates(aws_path) if aws_path else default_aws_certs()
    roots_path = settings.azure_instance_identity_roots
    inter_path = settings.azure_instance_identity_intermediates
    google_path = settings.google_instance_identity_certs
    max_age = settings.aws_instance_identity_max_age
    return IdentityTrust(
        aws_certs=_rsa_only(aws, str(aws_path or "shipped AWS bundle")),
        aws_max_age=timedelta(seconds=max_age) if max_age > 0 else None,
        azure_roots=tuple(
            load_pem_certificates(roots_path) if roots_path else default_azure_roots()
        ),
        azure_intermediates=tuple(load_pem_certificates(inter_path) if inter_path else ()),
        azure_fetch_intermediates=settings.azure_instance_identity_fetch_intermediates,
        google_keys=load_google_keys(google_path) if google_path else {},
        google_audience=settings.google_instance_identity_audience,
        google_replay_cache=InMemoryReplayCache(clock=clock.now)
        if settings.google_instance_identity_single_use
        else None,
    )


# -- step 1: required fields --------------------------------------------------


def require_fields(*fields: tuple[str, str]) -> None:
    """Coder's ``validate:"required"``: every empty field is reported, in order."""
    missing = [
        (name, 'Validation failed for tag "required" with value: ""')
        for name, value in fields
        if value == ""
    ]
    if missing:
        raise InvalidArgument(VALIDATION_FAILED, validations=missing)


# -- step 2: the credential ---------------------------------------------------


def verify_aws_identity(
    trust: IdentityTrust, clock: Clock, *, document: str, signature: str
) -> str:
    try:
        return verify_aws(
            document, signature, trust.aws_certs, now=clock.now(), max_age=trust.aws_max_age
        )
    except InvalidIdentity as err:
        raise Unauthenticated(INVALID_AWS, detail=err.detail) from err


def verify_azure_identity(trust: IdentityTrust, clock: Clock, *, signature: str) -> str:
    try:
        return verify_azure(
            signature,
            roots=trust.azure_roots,
            intermediates=trust.azure_intermediates,
            now=clock.now(),
            fetch_missing=trust.azure_fetch_intermediates,
        )
    except InvalidIdentity as err:
        raise Unauthenticated(INVALID_AZURE, detail=err.detail) from err


def verify_google_identity(trust: IdentityTrust, clock: Clock, *, json_web_token: str) -> str:
    if not trust.google_keys:
        raise Unauthenticated(INVALID_GCP, detail=GOOGLE_NOT_CONFIGURED)
    try:
        return verify_google(
            json_web_token,
            keys=trust.google_keys,
            audience=trust.google_audience,
            now=clock.now(),
            replay_cache=trust.google_replay_cache,
        )
    except MalformedClaims as err:
        raise InvalidArgument(MALFORMED_CLAIMS, detail=err.detail) from err
    except InvalidIdentity as err:
        raise Unauthenticated(INVALID_GCP, detail=err.detail) from err


# -- step 3: the agent ----------------------------------------------------------


def go_quote(text: str) -> str:
    """Go's ``%q`` for the printable text these messages carry."""
    out = ['"']
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def select_agent(
    candidates: list[AgentInWorkspace], *, instance_id: str, agent_name: str
) -> AgentInWorkspace:
    """Coder's choice among the login candidates (already root-only, latest build)."""
    name = agent_name.strip(_GO_SPACE)
    if not candidates:
        raise NotFound(f"Instance with id {go_quote(instance_id)} not found.")
    if name:
        for candidate in candidates:
            if candidate.agent.name == name:
                return candidate
        shown = name if len(name) <= MAX_QUOTED_NAME else name[:MAX_QUOTED_NAME] + "..."
        raise NotFound(
            f"No agent found with instance ID {go_quote(instance_id)} and name {go_quote(shown)}."
        )
    if len(candidates) != 1:
        # The caller has proven the instance identity, so naming the agents
        # on it leaks nothing (Coder's reasoning too).
        names = ", ".join(sorted(c.agent.name for c in candidates))
        raise Conflict(
            f"Multiple agents found with instance ID {go_quote(instance_id)}. "
            f"Set CODER_AGENT_NAME to one of: {names}"
        )
    return candidates[0]


def login_instance(db: Database, *, instance_id: str, agent_name: str) -> str:
    """Chooses the agent for a verified instance id and mints its new token."""
    token = new_agent_token()
    with db.session() as session:
        candidates = agent_store.get_login_candidates_by_instance_id(
            session, instance_id=instance_id
        )
        selected = select_agent(candidates, instance_id=instance_id, agent_name=agent_name)
        agent_store.set_agent_token_hash(
            session, agent_id=selected.agent.id, token_hash=hash_agent_token(token)
        )
    return str(token)
