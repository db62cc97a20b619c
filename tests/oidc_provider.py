"""A small OpenID Connect provider on 127.0.0.1 for the OIDC login tests: real HTTP, the
real protocol (discovery, JWKS, the authorization-code flow with PKCE, RS256 ID tokens).

    with OidcProvider("rag", "s3cret", "http://127.0.0.1:PORT/auth/callback") as idp:
        idp.user = "li"                   # who the authorize endpoint approves, at once
        idp.claims = {"aud": "other"}     # claims of the next ID tokens changed
        idp.signing_key = idp.other_key   # signed with a key the JWKS does not hold

Its /authorize approves `user` without a page: it checks the client, the redirect URI
and the PKCE challenge's method, and sends the browser back with a code and the state.
/token checks the client secret (HTTP Basic, or in the form), the code (once), the
redirect URI and the PKCE verifier, and answers with an ID token signed by joserfc (the
JOSE library authlib's own client verifies with). Every request is kept in `requests`.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit


class OidcProvider:
    def __init__(self, client_id: str, client_secret: str, redirect_uri: str):
        from joserfc.jwk import RSAKey

        self.client_id, self.redirect_uri = client_id, redirect_uri
        self.client_secret = self._secret = client_secret
        params = {"kid": "k1", "alg": "RS256", "use": "sig"}
        self.key = RSAKey.generate_key(2048, parameters=params)
        self.other_key = RSAKey.generate_key(2048, parameters=params)  # same kid, not listed
        self.signing_key = self.key
        self.user = "li"
        self.claims: dict = {}
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, parameters)
        self._codes: dict[str, dict] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}/realms/city"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OidcProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Approve `li` with untouched, properly signed ID tokens, and the first secret."""
        self.user, self.claims, self.signing_key = "li", {}, self.key
        self.client_secret = self._secret

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/protocol/openid-connect/auth",
            "token_endpoint": self.issuer + "/protocol/openid-connect/token",
            "jwks_uri": self.issuer + "/protocol/openid-connect/certs",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email"],
        }

    # ------------------------------------------------------------------ endpoints
    def _authorize(self, q: dict) -> tuple[int, dict, bytes]:
        ok = (
            q.get("response_type") == "code"
            and q.get("client_id") == self.client_id
            and q.get("redirect_uri") == self.redirect_uri
            and q.get("code_challenge_method") == "S256"
            and q.get("code_challenge")
            and "openid" in q.get("scope", "").split()
        )
        if not ok:
            return 400, {}, b"bad authorization request"
        code = secrets.token_urlsafe(24)
        self._codes[code] = {"user": self.user, "nonce": q.get("nonce"),
                             "challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"]}  # fmt: skip
        back = self.redirect_uri + "?" + urlencode({"code": code, "state": q.get("state", "")})
        return 302, {"Location": back}, b""

    def _token(self, form: dict, auth: str) -> tuple[int, dict, bytes]:
        from authlib.oauth2.rfc7636 import create_s256_code_challenge
        from authlib.oidc.core.util import create_half_hash
        from joserfc import jwt

        client, secret = form.get("client_id"), form.get("client_secret")
        if auth.startswith("Basic "):
            client, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client != self.client_id or secret != self.client_secret:
            return 401, {}, json.dumps({"error": "invalid_client"}).encode()
        grant = self._codes.pop(form.get("code", ""), None)
        if (
            grant is None
            or form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != grant["redirect_uri"]
            or create_s256_code_challenge(form.get("code_verifier", "")) != grant["challenge"]
        ):
            return 400, {}, json.dumps({"error": "invalid_grant"}).encode()
        now = int(time.time())
        access = secrets.token_urlsafe(24)
        claims = {
            "iss": self.issuer, "sub": f"sub-{grant['user']}", "aud": self.client_id,
            "azp": self.client_id, "exp": now + 300, "iat": now, "auth_time": now,
            "nonce": grant["nonce"], "preferred_username": grant["user"],
            "at_hash": create_half_hash(access, "RS256").decode(),
            **self.claims,
        }  # fmt: skip
        token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.signing_key)
        body = {"access_token": access, "token_type": "Bearer", "expires_in": 300,
                "id_token": token, "scope": "openid profile email"}  # fmt: skip
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def _handler(self):
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, headers: dict, body: bytes) -> None:
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                u = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                idp.requests.append(("GET", u.path, q))
                path = "http://" + self.headers["Host"] + u.path
                if path == idp.issuer + "/.well-known/openid-configuration":
                    self._send(200, {}, json.dumps(idp.discovery()).encode())
                elif path == idp.discovery()["jwks_uri"]:
                    keys = {"keys": [idp.key.as_dict(private=False)]}
                    self._send(200, {}, json.dumps(keys).encode())
                elif path == idp.discovery()["authorization_endpoint"]:
                    self._send(*idp._authorize(q))
                else:
                    self._send(404, {}, b"{}")

            def do_POST(self):
                u = urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(n).decode()).items()}
                idp.requests.append(("POST", u.path, form))
                if "http://" + self.headers["Host"] + u.path == idp.discovery()["token_endpoint"]:
                    self._send(*idp._token(form, self.headers.get("Authorization", "")))
                else:
                    self._send(404, {}, b"{}")

        return Handler
