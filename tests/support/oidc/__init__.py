"""A local OpenID Connect provider standing in for Google in tests.

`OIDCProvider` runs ``server.mjs`` (oauth2-mock-server plus the checks Google
makes) as a Node subprocess on loopback. Point the app's ``OIDC_DISCOVERY_URL``
at ``provider.discovery_url``, queue who signs in next with ``next_login``,
and let ``authorize`` play the browser's part at the provider. See README.md
in this folder for what the provider checks and what each knob does.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

__all__ = ["AuthorizeError", "OIDCProvider", "OIDCProviderError"]

SERVER_SCRIPT = Path(__file__).with_name("server.mjs")
REPO_ROOT = Path(__file__).resolve().parents[3]


class OIDCProviderError(RuntimeError):
    """The provider process could not be started or controlled."""


class AuthorizeError(RuntimeError):
    """The provider answered /authorize without redirecting back to the client."""

    def __init__(self, status_code: int, body: str) -> None:
        super().__init__(f"/authorize answered {status_code}: {body}")
        self.status_code = status_code
        self.body = body


class OIDCProvider:
    """One provider process; start it once per test session and `reset()` between tests."""

    def __init__(
        self,
        *,
        client_id: str = "accessai-test-client",
        client_secret: str = "accessai-test-secret",
        redirect_uris: list[str] | None = None,
        port: int = 0,
        startup_timeout: float = 20.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = list(redirect_uris or [])
        self.startup_timeout = startup_timeout
        self._requested_port = port
        self._port: int | None = None
        self._issuer: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    # ---- lifecycle ----

    def start(self) -> Self:
        """Spawn the provider and wait (bounded) until it accepts connections.

        Port 0 lets the OS pick a free port; after a `stop()`, `start()` binds
        the same port again so the issuer and discovery URL stay valid.
        """
        if self._process is not None:
            raise OIDCProviderError("provider already running")
        node = shutil.which("node")
        if node is None:
            raise OIDCProviderError("node is not on PATH")
        if not (REPO_ROOT / "node_modules" / "oauth2-mock-server").is_dir():
            raise OIDCProviderError(
                f"oauth2-mock-server is not installed: run `npm ci` in {REPO_ROOT}"
            )
        port = self._port if self._port is not None else self._requested_port
        command = [
            node,
            str(SERVER_SCRIPT),
            "--port",
            str(port),
            "--client-id",
            self.client_id,
            "--client-secret",
            self.client_secret,
            "--exit-on-stdin-close",
        ]
        for uri in self.redirect_uris:
            command += ["--redirect-uri", uri]
        # stderr goes to a file: nobody drains a pipe while tests run. It
        # lives as long as the process and is closed in stop().
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self._process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        try:
            ready = self._wait_ready(self._process)
        except BaseException:
            self.stop()
            raise
        self._port = int(ready["port"])
        self._issuer = str(ready["issuer"])
        return self

    def _wait_ready(self, process: subprocess.Popen[str]) -> dict[str, Any]:
        assert process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout = process.stdout

        def pump() -> None:
            # A thread, because a blocking readline cannot otherwise be bounded.
            for line in stdout:
                lines.put(line)
            lines.put("")

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OIDCProviderError(
                    f"provider not ready after {self.startup_timeout}s{self._stderr_tail()}"
                )
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line == "":
                raise OIDCProviderError(
                    f"provider exited with {process.wait()}{self._stderr_tail()}"
                )
            message: dict[str, Any] = json.loads(line)
            if message.get("event") == "ready":
                return message

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read()[-2000:]
        return f"; stderr:\n{text}" if text else ""

    def stop(self) -> None:
        """Stop the process; always safe to call. The port stays reserved for `start()`."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()  # the server exits when its stdin closes
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    @contextmanager
    def down(self) -> Iterator[None]:
        """Simulate an outage: connections are refused inside the block.

        The provider comes back on the same port afterwards, with a new
        signing key (as after a key rotation) and empty state.
        """
        self.stop()
        try:
            yield
        finally:
            self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- addresses ----

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def port(self) -> int:
        if self._port is None:
            raise OIDCProviderError("provider was never started")
        return self._port

    @property
    def issuer(self) -> str:
        if self._issuer is None:
            raise OIDCProviderError("provider was never started")
        return self._issuer

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    # ---- control API ----

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if not self.running:
            raise OIDCProviderError("provider is not running")
        response = httpx.request(method, f"{self.issuer}/__control{path}", json=body, timeout=10)
        if response.status_code != 200:
            raise OIDCProviderError(
                f"control {path} failed ({response.status_code}): {response.text}"
            )
        return response.json()

    def next_login(
        self,
        *,
        sub: str,
        email: str,
        email_verified: bool = True,
        name: str | None = None,
        extra_claims: dict[str, Any] | None = None,
        expired: bool = False,
        audience: str | None = None,
        issuer: str | None = None,
        unknown_kid: bool = False,
        bad_signature: bool = False,
        nonce: str | None = None,
        omit_nonce: bool = False,
        token_error: str | None = None,
        authorize_error: str | None = None,
    ) -> None:
        """Queue the identity (and knobs) for the next successful /authorize.

        Logins are consumed in order, one per /authorize that issues a code
        (or an error, with `authorize_error`). Knobs:
          expired: ID token expired an hour ago.
          audience: token minted for another client (`aud` and `azp` = audience).
          issuer: put this `iss` in the ID token.
          extra_claims: merged into the ID token last (overrides anything) and userinfo.
          unknown_kid: sign the ID token with a key absent from /jwks (own kid).
          bad_signature: same foreign key, but the published key's kid.
          nonce / omit_nonce: replace / drop the nonce echoed from /authorize.
          token_error: /token answers 400 with this OAuth error (e.g. invalid_grant).
          authorize_error: redirect back with ?error=... (e.g. access_denied).
        """
        fields: dict[str, Any] = {
            "sub": sub,
            "email": email,
            "email_verified": email_verified,
        }
        optional: dict[str, Any] = {
            "name": name,
            "extra_claims": extra_claims,
            "audience": audience,
            "issuer": issuer,
            "nonce": nonce,
            "token_error": token_error,
            "authorize_error": authorize_error,
        }
        fields.update({key: value for key, value in optional.items() if value is not None})
        flags = {
            "expired": expired,
            "unknown_kid": unknown_kid,
            "bad_signature": bad_signature,
            "omit_nonce": omit_nonce,
        }
        fields.update({key: True for key, value in flags.items() if value})
        self._control("POST", "/logins", fields)

    def reset(self) -> None:
        """Forget queued logins, issued codes and tokens, and the request log."""
        self._control("POST", "/reset")

    def requests(self) -> dict[str, list[dict[str, Any]]]:
        """What clients sent: {"authorize": [query...], "token": [...], "userinfo": [...]}.

        Token entries say which client authentication was used, whether a PKCE
        verifier was sent, and the status/error answered; no secrets.
        """
        result: dict[str, list[dict[str, Any]]] = self._control("GET", "/requests")
        return result

    # ---- the browser's part ----

    async def authorize(self, authorization_url: str) -> str:
        """Follow the app's redirect to /authorize; return where the provider sends the browser.

        That is the app's callback URL with `code` and `state` (or `error`);
        it is returned, not followed, so the test calls the app's callback
        itself, as is or tampered with. Raises AuthorizeError when the
        provider refuses without redirecting (unknown client, bad redirect_uri...).
        """
        if not authorization_url.startswith(f"{self.issuer}/"):
            raise ValueError(f"not this provider's URL: {authorization_url}")
        async with httpx.AsyncClient(follow_redirects=False, timeout=10) as client:
            response = await client.get(authorization_url)
        if not response.is_redirect:
            raise AuthorizeError(response.status_code, response.text)
        return str(response.headers["location"])
