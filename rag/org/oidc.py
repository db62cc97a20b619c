"""Optional OIDC login (authlib): the authorization-code flow with PKCE against the
department's identity provider (Keycloak, Authing, ...), whose verified ID token names a
local account of the home.

`OidcLogin.begin` makes the issuer's authorization URL (its endpoints read from the
discovery document `{oidc_issuer}/.well-known/openid-configuration`) with a fresh state,
nonce and PKCE verifier, kept here in memory for `PENDING_S` and bound to the browser
that asked; `OidcLogin.finish` takes the browser back with its code, exchanges the code
at the token endpoint with the client secret, and verifies the ID token as authlib does
(signature against the issuer's JWKS, iss, aud, exp, iat, nonce, azp, at_hash).

The claim `oidc_username_claim` names the account, which must exist already (`rag user
add NAME ...`): an OIDC login creates none, so the identity provider says who someone is
and the home's admin what they may read. Every failure is an `OidcError`, whose message
is for the user (Chinese) and whose `reason` is for the log; neither holds a code, a
token or the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from rag.config import Settings
from rag.errors import AuthError, ConfigError, NotFoundError

PENDING_S = 600.0  # a login left at the issuer's page longer than this starts again
MAX_PENDING = 10_000  # logins on their way at once; the oldest are forgotten past this
LEEWAY_S = 60  # clock difference allowed between the issuer and this server
# asymmetric signatures only: an HS256 token would be signed with the client secret,
# which the issuer is not the only one to hold
SIGNING_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                "ES256", "ES384", "ES512", "EdDSA")  # fmt: skip

UNREACHABLE = "暂时无法连接单位统一身份认证服务，请稍后再试；如果一直这样，请联系管理员。"
EXPIRED = "这次登录已过期或不是从本页面发起的，请回到登录页重新登录。"
REFUSED = "单位统一身份认证服务没有完成这次登录，请回到登录页重新登录。"
INVALID = "统一身份认证返回的身份凭据未通过校验，请重新登录；如果一直这样，请联系管理员。"


class OidcError(AuthError):
    """A login that did not succeed: `str(e)` for the user, `reason` for the log,
    `status` the HTTP status of the page that says so."""

    def __init__(self, message: str, reason: str, status: int = 400):
        super().__init__(message)
        self.reason = reason
        self.status = status


def no_account(name: str) -> str:
    """What a person the issuer vouches for, without an account here, is told."""
    shown = name[:64]
    return (
        f"统一身份认证已确认您是“{shown}”，但本系统还没有这个账号。请联系管理员运行 "
        f"rag user add {shown} --role reader --kb 知识库名 为您开设账号，然后重新登录。"
    )


@dataclass(frozen=True)
class Pending:
    """One login on its way through the issuer, found again by its state."""

    nonce: str
    code_verifier: str
    browser: str  # SHA-256 of the browser's flow cookie: the callback must come from it
    expires: float


def client_secret(settings: Settings) -> str:
    """The client secret, from the environment variable `oidc_client_secret_env` only."""
    name = settings.oidc_client_secret_env
    secret = os.environ.get(name, "")
    if not secret:
        raise ConfigError(
            f"OIDC login (oidc_issuer = {settings.oidc_issuer}) needs the client secret in "
            f"the environment variable {name}: set it to the secret the issuer shows for "
            f"client {settings.oidc_client_id} (never in the settings file)"
        )
    return secret


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class OidcLogin:
    """The OIDC login of one home: `begin` a login, `finish` it with what the issuer
    sends back. One per process; the discovery document and keys are read once (the
    keys again when the issuer signs with a key it did not list before)."""

    def __init__(self, settings: Settings):
        from authlib.integrations.starlette_client import StarletteIntegration, StarletteOAuth2App

        if not settings.oidc_issuer:
            raise ConfigError("OIDC login needs oidc_issuer in the settings file")
        self.settings = settings
        self.issuer = settings.oidc_issuer.rstrip("/")
        self._app = StarletteOAuth2App(
            StarletteIntegration("rag"),
            name="rag",
            client_id=settings.oidc_client_id,
            client_secret=client_secret(settings),
            server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
            client_kwargs={
                "scope": settings.oidc_scope,
                "code_challenge_method": "S256",
                "timeout": settings.oidc_timeout_s,
            },
        )
        self._pending: OrderedDict[str, Pending] = OrderedDict()

    # ------------------------------------------------------------------ the flow
    async def begin(self, browser: str) -> str:
        """The issuer's authorization URL for a new login by the browser holding the
        random `browser` value (in a cookie it sends back with the callback)."""
        await self._metadata()
        try:
            rv = await self._app.create_authorization_url(self.settings.oidc_redirect_uri)
        except Exception as e:  # noqa: BLE001 -- any failure is the page's, never a traceback
            raise OidcError(UNREACHABLE, f"authorization URL: {type(e).__name__}", 502) from None
        now = time.monotonic()
        while self._pending and (
            len(self._pending) >= MAX_PENDING or next(iter(self._pending.values())).expires < now
        ):
            self._pending.popitem(last=False)
        self._pending[rv["state"]] = Pending(
            rv["nonce"], rv["code_verifier"], _hash(browser), now + PENDING_S
        )
        return rv["url"]

    async def finish(self, params: Mapping[str, str], browser: str) -> str:
        """The name of the account the issuer's answer (the callback's query `params`)
        logs in, for the browser holding `browser`. Raises OidcError."""
        pending = self._pending.pop(params.get("state") or "", None)
        if (
            pending is None
            or pending.expires < time.monotonic()
            or not hmac.compare_digest(pending.browser, _hash(browser or ""))
        ):
            raise OidcError(EXPIRED, "unknown, expired or another browser's state")
        if params.get("error"):
            raise OidcError(REFUSED, f"the issuer answered error={params['error'][:80]}")
        if not params.get("code"):
            raise OidcError(REFUSED, "the callback carries no code")
        claims = await self._verified_claims(params["code"], pending)
        return self._account(claims)

    # ------------------------------------------------------------------ its steps
    async def _metadata(self) -> dict:
        try:
            metadata = await self._app.load_server_metadata()
        except Exception as e:  # noqa: BLE001 -- unreachable, refused, not JSON: all the same here
            raise OidcError(
                UNREACHABLE, f"discovery at {self.issuer}: {type(e).__name__}", 502
            ) from None
        if str(metadata.get("issuer", "")).rstrip("/") != self.issuer:
            raise OidcError(
                UNREACHABLE,
                f"the discovery document names issuer {str(metadata.get('issuer'))[:200]!r}, "
                f"not {self.issuer!r}: check oidc_issuer",
                502,
            )
        # authlib checks the ID token's signature with the algorithms the issuer lists
        metadata["id_token_signing_alg_values_supported"] = [
            a for a in metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
            if a in SIGNING_ALGS
        ] or ["RS256"]  # fmt: skip
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        self._app.client_kwargs["token_endpoint_auth_method"] = (
            "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
        )
        return metadata

    async def _verified_claims(self, code: str, pending: Pending) -> Mapping:
        from authlib.common.errors import AuthlibBaseError
        from joserfc.errors import JoseError

        metadata = await self._metadata()
        try:
            token = await self._app.fetch_access_token(
                redirect_uri=self.settings.oidc_redirect_uri,
                code=code,
                code_verifier=pending.code_verifier,
            )
        except AuthlibBaseError as e:  # the token endpoint's own error answer
            raise OidcError(REFUSED, f"token endpoint: {e.error}") from None
        except Exception as e:  # noqa: BLE001 -- unreachable, or not an OAuth answer
            raise OidcError(UNREACHABLE, f"token endpoint: {type(e).__name__}", 502) from None
        if "id_token" not in token:
            raise OidcError(
                INVALID, "the token response has no id_token (is openid in oidc_scope?)"
            )
        options = {
            "iss": {"essential": True, "value": metadata["issuer"]},
            "aud": {"essential": True, "value": self.settings.oidc_client_id},
        }
        try:
            return await self._app.parse_id_token(
                token, nonce=pending.nonce, claims_options=options, leeway=LEEWAY_S
            )
        except (JoseError, AuthlibBaseError, ValueError) as e:
            raise OidcError(INVALID, f"ID token: {type(e).__name__} {e}"[:300]) from None
        except Exception as e:  # noqa: BLE001 -- the keys could not be read
            raise OidcError(UNREACHABLE, f"ID token keys: {type(e).__name__}", 502) from None

    def _account(self, claims: Mapping) -> str:
        from rag.org.accounts import Accounts

        claim = self.settings.oidc_username_claim
        name = claims.get(claim)
        if not isinstance(name, str) or not name.strip():
            raise OidcError(
                f"统一身份认证返回的身份中没有用户名（{claim}），请联系管理员检查设置 "
                "oidc_username_claim。",
                f"the ID token has no string claim {claim!r}",
            )
        name = name.strip()
        try:
            Accounts(self.settings).get(name)
        except NotFoundError:
            raise OidcError(no_account(name), f"no account {name[:64]!r}", 403) from None
        return name
