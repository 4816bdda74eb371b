"""SSRF fence for AIA CA-issuer fetching. Only 127.0.0.1 is ever contacted."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from server.identity.fetch import (
    FetchFailed,
    FetchRefused,
    check_url,
    fetch_ca_issuer,
    is_forbidden_address,
)

pytestmark = pytest.mark.timeout(60)


def loopback(host, port):
    return ["127.0.0.1"]


def _no_dns(host, port):
    raise AssertionError("must be refused before any DNS lookup")


# --------------------------------------------------------- address policy


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # CGNAT
        "100.127.255.254",
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "198.18.0.1",
        "192.0.2.1",
        "::",
        "::ffff:169.254.169.254",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "64:ff9b::a9fe:a9fe",  # NAT64 form of 169.254.169.254
        "64:ff9b:1::1",
        "2002:a9fe:a9fe::1",  # 6to4 form of 169.254.169.254
        "2001:db8::1",
        "100::1",
        "not an ip",
        "",
    ],
)
def test_forbidden_addresses(address):
    assert is_forbidden_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "13.107.246.1"])
def test_public_addresses_are_allowed(address):
    assert not is_forbidden_address(address)


# --------------------------------------------------------------- URL fence


@pytest.mark.parametrize(
    "url",
    [
        "http://www.microsoft.com/pkiops/certs/x.crt",
        "https://cacerts.digicert.com/x.crt",
        "http://WWW.MICROSOFT.COM./x.crt",
        "http://www.microsoft.com:443/x.crt",
    ],
)
def test_allowed_urls(url):
    _scheme, host, port, _path = check_url(url)
    assert host in {"www.microsoft.com", "cacerts.digicert.com"}
    assert port in {80, 443}


@pytest.mark.parametrize(
    "url",
    [
        "ftp://www.microsoft.com/x.crt",
        "file:///etc/passwd",
        "gopher://www.microsoft.com/",
        "ldap://www.microsoft.com/cn=x",
        "//www.microsoft.com/x.crt",
        "http://evil.example/x.crt",
        "http://www.microsoft.com.evil.example/x.crt",
        "http://127.0.0.1/x.crt",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://www.microsoft.com:8080/x.crt",
        "http://www.microsoft.com:22/x.crt",
        "http://www.microsoft.com:99999/x.crt",
        "http://user:pw@www.microsoft.com/x.crt",
        "http://evil.example@www.microsoft.com/x.crt",
        "http://www.microsoft.com/x.crt\r\nHost: evil",
        "http://www.microsoft.com /x.crt",
        "",
        "x" * 3000,
    ],
)
def test_refused_urls_never_reach_dns(url):
    with pytest.raises(FetchRefused):
        fetch_ca_issuer(url, resolver=_no_dns)


def test_non_string_url_refused():
    with pytest.raises(FetchRefused):
        check_url(None)  # type: ignore[arg-type]


# ------------------------------------------------------- loopback canary


def test_loopback_url_is_refused_and_never_contacted(canary):
    with pytest.raises(FetchRefused):
        fetch_ca_issuer(canary.url())
    assert canary.hits == []


def test_loopback_refused_even_with_its_port_allowed(canary):
    # Host allow-list and port pass; the address check must still stop it.
    with pytest.raises(FetchRefused, match="non-public"):
        fetch_ca_issuer(
            canary.url(),
            allowed_hosts={"127.0.0.1"},
            allowed_ports={canary.port},
            resolver=lambda host, port: [host],
        )
    assert canary.hits == []


def test_allow_listed_host_resolving_to_loopback_is_refused(canary):
    # DNS rebinding: the name is allowed, the answer is not.
    with pytest.raises(FetchRefused, match="non-public"):
        fetch_ca_issuer(
            f"http://www.microsoft.com:{canary.port}/x.crt",
            allowed_ports={canary.port},
            resolver=loopback,
        )
    assert canary.hits == []


def test_mixed_public_and_private_answers_are_refused(canary):
    with pytest.raises(FetchRefused):
        fetch_ca_issuer(
            "http://www.microsoft.com/x.crt",
            resolver=lambda host, port: ["93.184.215.14", "127.0.0.1"],
        )
    assert canary.hits == []


def test_resolution_failure_is_a_fetch_failure():
    def broken(host, port):
        raise OSError("no such host")

    with pytest.raises(FetchFailed):
        fetch_ca_issuer("http://www.microsoft.com/x.crt", resolver=broken)


# ------------------------------------------- transport behaviour (loopback)
#
# These deliberately lift the address filter so the download path itself can
# be exercised against the loopback canary; nothing else is contacted.


def fetch_local(canary, **kw):
    return fetch_ca_issuer(
        f"http://ca.test:{canary.port}/ca.crt",
        allowed_hosts={"ca.test"},
        allowed_ports={canary.port},
        resolver=loopback,
        address_filter=lambda ip: ip != "127.0.0.1",
        **kw,
    )


def test_download_parses_der(canary, azure):
    canary.body = azure.intermediate.cert.public_bytes(serialization.Encoding.DER)
    assert fetch_local(canary) == azure.intermediate.cert
    assert canary.hits == ["/ca.crt"]


def test_body_cap(canary, azure):
    canary.body = b"\x30" * 2048
    with pytest.raises(FetchFailed, match="too large"):
        fetch_local(canary, max_bytes=1024)


def test_non_der_body_is_not_echoed(canary):
    canary.body = b"<html>secret internal page</html>"
    with pytest.raises(FetchFailed) as info:
        fetch_local(canary)
    assert "secret" not in str(info.value)
    assert info.value.__cause__ is None


@pytest.mark.parametrize("status", [301, 404, 500])
def test_non_200_is_a_failure_and_redirects_are_not_followed(canary, status):
    canary.status = status
    with pytest.raises(FetchFailed, match=str(status)):
        fetch_local(canary)
    assert len(canary.hits) == 1
