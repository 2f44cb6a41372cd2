"""node-oidc-provider as an independent OpenID Provider for tests.

Parley must sign in against "at least one independent OpenID Provider implementation that Parley
did not write, installed from a package registry". This is panva's ``oidc-provider`` (OpenID
Certified) from npm, pinned in ``tests/support/node_provider/package-lock.json`` and installed by
``make node-deps``; ``provider.mjs`` there only configures it.

    with running_node_provider(clients=[web_client(...)], accounts=ACCOUNTS,
                               audience="https://api.parley.test") as provider:
        ...  # an RP builds an authorize URL against provider.issuer
        async with httpx.AsyncClient() as browser:
            callback = await sign_in(browser, authorize_url, login="alice")
        # callback.headers["location"] is the RP's redirect URI with code and state

What the provider does (see ``provider.mjs``): authorization code with PKCE (S256, required),
refresh tokens (with ``offline_access``) rotated at every use, client credentials, revocation,
introspection, RP-initiated and back-channel logout. Access tokens requested for ``audience``
(``resource``, or an Auth0-style ``audience`` parameter) are RFC 9068 JWTs (``typ`` ``at+jwt``);
token requests without ``resource`` get the granted one. The built-in development login page
accepts any password; an unknown login comes back to the RP as ``error=access_denied``.
First-party clients skip consent; a client with ``"first_party": False`` gets the consent page,
which ``sign_in`` accepts.

Refresh tokens go to every client allowed the ``refresh_token`` grant: oidc-provider drops a
requested ``offline_access`` unless ``prompt=consent`` is sent too (OpenID Connect Core §11).

Known limit: oidc-provider's userinfo endpoint accepts only its own opaque access tokens, not
JWTs for a resource, so an RP gets the profile claims from the ID token (they are put there). With
``use_granted_resource=False`` a token request without ``resource`` gets such an opaque token
(strict RFC 8707 behaviour), and the RP must send ``resource`` to get the API's JWT.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import httpx

from parley.embedded import free_port

NODE_PROVIDER_DIR = Path(__file__).parent / "node_provider"
OIDC_PROVIDER_PACKAGE = NODE_PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json"
DEFAULT_RESOURCE_SCOPE = "chat.read chat.write"
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
MAX_SIGN_IN_STEPS = 20


class NodeProviderUnavailable(RuntimeError):
    """node or the npm packages are missing, or the provider did not start."""


def web_client(
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    *,
    post_logout_redirect_uri: str | None = None,
    backchannel_logout_uri: str | None = None,
    scope: str = "openid profile email offline_access " + DEFAULT_RESOURCE_SCOPE,
    auth_method: str = "client_secret_basic",
    first_party: bool = True,
    **metadata: Any,
) -> dict[str, Any]:
    """Metadata of a confidential web client (code, refresh token and client credentials)."""
    client: dict[str, Any] = {
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uris": [redirect_uri],
        "response_types": ["code"],
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_method": auth_method,
        "scope": scope,
        "first_party": first_party,
    }
    if post_logout_redirect_uri is not None:
        client["post_logout_redirect_uris"] = [post_logout_redirect_uri]
    if backchannel_logout_uri is not None:
        client["backchannel_logout_uri"] = backchannel_logout_uri
        client["backchannel_logout_session_required"] = True  # sid in ID and logout tokens
    return client | metadata


def machine_client(
    client_id: str, client_secret: str, *, scope: str = DEFAULT_RESOURCE_SCOPE
) -> dict[str, Any]:
    """Metadata of a client-credentials-only client allowed ``scope``."""
    return {
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uris": [],
        "response_types": [],
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": scope,
    }


@dataclass
class NodeProvider:
    """A running node-oidc-provider."""

    url: str
    issuer: str
    audience: str
    process: subprocess.Popen[bytes]
    config_path: Path
    log_path: Path
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def token_endpoint(self) -> str:
        return str(self.metadata["token_endpoint"])

    @property
    def authorization_endpoint(self) -> str:
        return str(self.metadata["authorization_endpoint"])

    @property
    def end_session_endpoint(self) -> str:
        return str(self.metadata["end_session_endpoint"])

    @property
    def revocation_endpoint(self) -> str:
        return str(self.metadata["revocation_endpoint"])

    @property
    def introspection_endpoint(self) -> str:
        return str(self.metadata["introspection_endpoint"])

    @property
    def jwks_uri(self) -> str:
        return str(self.metadata["jwks_uri"])

    def output(self) -> str:
        """Everything the provider has printed so far."""
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running_node_provider(
    *,
    clients: list[dict[str, Any]],
    accounts: Mapping[str, Mapping[str, Any]],
    audience: str,
    port: int | None = None,
    resource_scope: str = DEFAULT_RESOURCE_SCOPE,
    ttl: Mapping[str, int] | None = None,
    use_granted_resource: bool = True,
    extra_token_claims: Mapping[str, Any] | None = None,
    jwks: Mapping[str, Any] | None = None,
) -> Iterator[NodeProvider]:
    """Run node-oidc-provider on ``port`` (default: a free one) until the block ends.

    ``clients`` are oidc-provider client metadata (see ``web_client``, ``machine_client``);
    ``accounts`` map a login name to its claims (``sub`` defaults to the login name); ``ttl``
    overrides lifetimes in seconds by oidc-provider's names (``AccessToken``, ``RefreshToken``…).
    """
    node = _require_installed()
    port = port or free_port()
    issuer = f"http://127.0.0.1:{port}"
    config: dict[str, Any] = {
        "issuer": issuer,
        "port": port,
        "audience": audience,
        "resource_scope": resource_scope,
        "clients": clients,
        "accounts": {login: dict(claims) for login, claims in accounts.items()},
        "use_granted_resource": use_granted_resource,
        "ttl": dict(ttl or {}),
    }
    if extra_token_claims is not None:
        config["extra_token_claims"] = dict(extra_token_claims)
    if jwks is not None:
        config["jwks"] = dict(jwks)
    with tempfile.TemporaryDirectory(prefix="parley-node-provider-") as directory:
        config_path = Path(directory) / "config.json"
        config_path.write_text(json.dumps(config, indent=2))
        log_path = Path(directory) / "provider.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [node, "provider.mjs", str(config_path), "--exit-with-stdin"],
                cwd=NODE_PROVIDER_DIR,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ | {"NODE_ENV": "test"},
            )
            provider = NodeProvider(issuer, issuer, audience, process, config_path, log_path)
            try:
                provider.metadata = _wait_until_ready(provider)
                yield provider
            finally:
                _stop(process)


def _require_installed() -> str:
    node = shutil.which("node")
    if node is None:
        raise NodeProviderUnavailable(
            "node is not installed; the independent OpenID Provider tests need Node.js 20+"
        )
    if not OIDC_PROVIDER_PACKAGE.exists():
        raise NodeProviderUnavailable(
            f"oidc-provider is not installed in {NODE_PROVIDER_DIR}; run `make node-deps`"
        )
    return node


def _wait_until_ready(provider: NodeProvider) -> dict[str, Any]:
    url = provider.url + "/.well-known/openid-configuration"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if provider.process.poll() is not None:
            raise NodeProviderUnavailable(
                f"node-oidc-provider exited with {provider.process.returncode}:\n"
                + provider.output()
            )
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = httpx.get(url, timeout=1.0)
            if response.status_code == 200:
                metadata: dict[str, Any] = response.json()
                return metadata
        time.sleep(0.05)
    raise NodeProviderUnavailable(
        f"node-oidc-provider did not answer {url} within {START_TIMEOUT_SECONDS:.0f} s:\n"
        + provider.output()
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    stdin: IO[bytes] | None = process.stdin
    if stdin is not None:
        stdin.close()


# --- driving the provider's pages like a browser ---------------------------------------------


@dataclass
class _Form:
    action: str
    method: str
    fields: dict[str, str]
    inputs: list[str]  # names of the visible inputs, in order


class _FormParser(HTMLParser):
    """The forms of a page: action, method and inputs (buttons may sit outside, via form=)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self._ids: dict[str, _Form] = {}
        self._current: _Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._current = _Form(
                attributes.get("action", ""), attributes.get("method", "get").lower(), {}, []
            )
            self.forms.append(self._current)
            if "id" in attributes:
                self._ids[attributes["id"]] = self._current
        elif tag == "input" and (owner := self._form_for(attributes)) is not None:
            name = attributes.get("name")
            if name is None:
                return
            if attributes.get("type", "text").lower() == "hidden":
                owner.fields[name] = attributes.get("value", "")
            else:
                owner.inputs.append(name)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None

    def _form_for(self, attributes: dict[str, str]) -> _Form | None:
        owner = attributes.get("form")
        return self._ids.get(owner) if owner else self._current


def _forms(html: str) -> list[_Form]:
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


async def _drive(
    client: httpx.AsyncClient,
    start_url: str,
    fill: Mapping[str, Mapping[str, str]],
    what: str,
) -> httpx.Response:
    """GET ``start_url`` and follow the provider's redirects and forms until it redirects away.

    ``fill`` gives the values to submit per form kind (the form's hidden ``prompt`` value, or
    ``logout``). Returns the redirect that leaves the provider's origin, not followed.
    """
    provider_origin = _origin(start_url)
    response = await client.get(start_url, follow_redirects=False)
    for _ in range(MAX_SIGN_IN_STEPS):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if _origin(location) != provider_origin:
                return response
            response = await client.get(location, follow_redirects=False)
            continue
        forms = [f for f in _forms(response.text) if f.method == "post"]
        if response.status_code != 200 or not forms:
            raise AssertionError(
                f"{what}: the provider answered {response.status_code} at {response.url}:\n"
                + response.text[:2000]
            )
        form = forms[0]
        kind = form.fields.get("prompt") or ("logout" if "xsrf" in form.fields else "")
        data = {name: "" for name in form.inputs} | form.fields | dict(fill.get(kind, {}))
        action = urljoin(str(response.url), form.action)
        response = await client.post(action, data=data, follow_redirects=False)
    raise AssertionError(f"{what}: still at the provider after {MAX_SIGN_IN_STEPS} steps")


async def sign_in(
    client: httpx.AsyncClient,
    authorize_url: str,
    *,
    login: str,
    password: str = "any",  # noqa: S107 -- the development login page accepts any password
) -> httpx.Response:
    """Sign in as ``login`` at the provider from ``authorize_url`` (an RP's authorize URL).

    ``client`` plays the browser and keeps the provider's cookies (a second call signs in
    without the login page). Submits the login page and, for third-party clients, the consent
    page. Returns the provider's final redirect, not followed: its ``Location`` is the RP's
    redirect URI with ``code``, ``state`` and ``iss`` (or ``error``).
    """
    fill = {"login": {"login": login, "password": password}, "consent": {}}
    return await _drive(client, authorize_url, fill, f"sign-in as {login!r}")


async def sign_out(client: httpx.AsyncClient, end_session_url: str) -> httpx.Response:
    """Confirm an RP-initiated logout at ``end_session_url`` (with ``id_token_hint`` etc.).

    Ends the provider session for every client (``logout=yes``), which sends back-channel
    logout tokens. Returns the redirect to the ``post_logout_redirect_uri``, not followed; with
    none registered, raises because the provider keeps the browser on its own success page.
    """
    return await _drive(client, end_session_url, {"logout": {"logout": "yes"}}, "sign-out")


# --- token endpoint helpers -------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` pair for S256."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def client_credentials_token(
    provider: NodeProvider,
    client_id: str,
    client_secret: str,
    scope: str,
    resource: str | None = None,
    *,
    http_client: httpx.AsyncClient | None = None,
) -> str:
    """An access token from the client-credentials grant (for ``resource``, default the API)."""
    data = {
        "grant_type": "client_credentials",
        "scope": scope,
        "resource": resource or provider.audience,
    }
    async with contextlib.AsyncExitStack() as stack:
        if http_client is None:
            http_client = await stack.enter_async_context(httpx.AsyncClient())
        response = await http_client.post(
            provider.token_endpoint, data=data, auth=(client_id, client_secret)
        )
    if response.status_code != 200:
        raise AssertionError(
            f"client credentials for {client_id!r} failed: {response.status_code} {response.text}"
        )
    return str(response.json()["access_token"])


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a JWS compact token, unverified (for assertions only)."""
    header, payload, _signature = token.split(".")
    return _b64_json(header), _b64_json(payload)


def _b64_json(segment: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return value
