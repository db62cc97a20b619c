"""The OIDC login's two routes on the chat page, beside Gradio's own /login.

`OidcRoutes`, an ASGI middleware on Gradio's app (as `rag.serve.ui.login.LoginPage`),
answers GET auth/oidc by sending the browser to the issuer (rag.org.oidc.OidcLogin) and
GET auth/callback by taking it back: a verified account gets the session Gradio's /login
would give it (`open_session`) and goes to the chat; anything else gets a Chinese page
that says what happened, and one log line that says why, without a code, token or secret.

The browser that starts a login holds a random value in a short-lived cookie; only the
callback that brings it back finishes that login, so a link with someone else's code and
state logs nobody in (login CSRF).
"""

from __future__ import annotations

import logging
import secrets

from rag.config import OIDC_CALLBACK
from rag.org.oidc import PENDING_S, OidcError, OidcLogin
from rag.serve.ui.login import OIDC_START, message_page, open_session, page_path

log = logging.getLogger("rag.serve.oidc")

FLOW_COOKIE = "rag-oidc-flow"
START = "/" + OIDC_START
CALLBACK = "/" + OIDC_CALLBACK
FAILED_TITLE = "统一身份认证登录未成功"


class OidcRoutes:
    """ASGI middleware for Gradio's app: the OIDC login's start and callback routes;
    every other request goes on to Gradio."""

    def __init__(self, app, login: OidcLogin):
        self.app = app
        self.login = login

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        path = page_path(scope)
        if path not in (START, CALLBACK):
            return await self.app(scope, receive, send)
        from starlette.requests import Request

        request = Request(scope)
        if path == CALLBACK:
            request.query_params  # noqa: B018 -- read now, before the line below hides it
            # the server's access log prints the query when the response starts: the code
            # and state are single-use, yet have no place in a log
            scope["query_string"] = b"code=-&state=-"
        try:
            if path == START:
                response = await self._start(request)
            else:
                response = await self._callback(request, scope.get("app"))
        except OidcError as e:
            log.warning("OIDC login refused: %s", e.reason)
            response = _page(str(e), e.status)
        except Exception as e:  # noqa: BLE001 -- a page, never a traceback
            log.exception("OIDC login failed: %s", type(e).__name__)
            response = _page("暂时无法登录，请稍后再试。", 500)
        await response(scope, receive, send)

    async def _start(self, request):
        from starlette.responses import RedirectResponse

        browser = secrets.token_urlsafe(32)
        url = await self.login.begin(browser)
        response = RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
        # Lax: sent back on the issuer's redirect (a top-level GET), not on another site's posts
        response.set_cookie(
            FLOW_COOKIE, browser, max_age=int(PENDING_S), httponly=True, samesite="lax",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    async def _callback(self, request, gradio):
        from gradio import route_utils
        from starlette.responses import RedirectResponse

        if gradio is None or getattr(gradio, "auth", None) is None:
            raise OidcError("本页面没有开启登录。", "the chat page has no login", 404)
        name = await self.login.finish(request.query_params, request.cookies.get(FLOW_COOKIE, ""))
        root = route_utils.get_root_url(
            request=request, route_path=CALLBACK, root_path=getattr(gradio, "root_path", None)
        )
        response = RedirectResponse(root + "/", status_code=302)
        open_session(gradio, response, name)
        response.delete_cookie(FLOW_COOKIE)
        log.info("OIDC login: %s", name)
        return response


def _page(message: str, status: int):
    from starlette.responses import HTMLResponse

    return HTMLResponse(
        message_page(FAILED_TITLE, message), status_code=status,
        headers={"Cache-Control": "no-store"},
    )  # fmt: skip
