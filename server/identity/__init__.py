"""Cloud instance-identity verification (AWS, Azure, GCP) for agent login.

Pure functions over untrusted input plus explicit trust material and an
injected clock; no web framework, database or hidden network access (Azure
intermediate fetching is opt-in). See each module's docstring.
"""

from .aws import verify_aws
from .azure import verify_azure
from .errors import InvalidIdentity, MalformedClaims
from .google import InMemoryReplayCache, ReplayCache, verify_google
from .trust import (
    default_aws_certs,
    default_azure_roots,
    load_google_keys,
    load_pem_certificates,
    parse_google_keys,
    parse_pem_certificates,
)

__all__ = [
    "InMemoryReplayCache",
    "InvalidIdentity",
    "MalformedClaims",
    "ReplayCache",
    "default_aws_certs",
    "default_azure_roots",
    "load_google_keys",
    "load_pem_certificates",
    "parse_google_keys",
    "parse_pem_certificates",
    "verify_aws",
    "verify_azure",
    "verify_google",
]
