"""The login page: Chinese in every browser, in front of Gradio's own.

Gradio checks names and passwords itself (`auth=`, POST /login, its session cookie) but
draws its login form in the browser's language ("Incorrect Credentials" in an English
one). `LoginPage`, an ASGI middleware on Gradio's app, answers a visitor without a valid
session with this page instead; the page posts to Gradio's /login, so the check, the
cookie, the delay after a failure (rag.serve.limits) and /logout stay Gradio's. With an
OIDC issuer configured it also offers the department's single sign-on
(rag.serve.ui.oidc), which ends in the same Gradio session (`open_session`).
"""

from __future__ import annotations

import html
import json
import secrets

WRONG = "用户名或密码不正确。"
FAILED = "暂时无法登录，请稍后再试。"
OIDC_BUTTON = "使用单位统一身份认证登录"
OIDC_START = "auth/oidc"  # relative to the page: the route that sends the browser to the issuer

STYLE = """<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: "Source Sans Pro", "Noto Sans CJK SC", "WenQuanYi Micro Hei",
  "PingFang SC", "Microsoft YaHei", sans-serif; background: #f3f4f6; margin: 0; }
main { max-width: 360px; margin: 12vh auto; background: #fff; border-radius: 12px;
  padding: 2em; box-shadow: 0 2px 12px rgba(0,0,0,.08); }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
p.note { color: #4b5563; font-size: .9em; }
label { display: block; margin: 1em 0 .3em; font-weight: 600; }
input { width: 100%; box-sizing: border-box; padding: .6em; font-size: 1em;
  border: 1px solid #d1d5db; border-radius: 8px; }
button, a.button { display: block; box-sizing: border-box; margin-top: 1.5em; width: 100%;
  padding: .7em; font-size: 1em; border: 0; border-radius: 8px; background: #f97316;
  color: #fff; cursor: pointer; text-align: center; text-decoration: none; }
a.button.sso { background: #2563eb; margin-top: 1em; }
button:disabled { opacity: .6; }
p.or { text-align: center; color: #6b7280; margin: 1.5em 0 0; }
#rag-login-error, #rag-oidc-error { color: #991b1b; min-height: 1.5em; margin: 1em 0 0; }
code { word-break: break-all; }
</style>"""

PAGE = """<!doctype html>
<html lang="zh-CN"><head>{style}
<title>登录 · 文档问答</title></head>
<body><main>
<h1>文档问答</h1>
<p class="note">{note}</p>
<form id="rag-login" method="post" action="login">
<label for="rag-login-name">用户名</label>
<input id="rag-login-name" name="username" type="text" autocomplete="username" required autofocus>
<label for="rag-login-password">密码</label>
<input id="rag-login-password" name="password" type="password" autocomplete="current-password" required>
<button id="rag-login-submit" type="submit">登录</button>
<p id="rag-login-error" role="alert"></p>
</form>{sso}</main>
<script>
const form = document.getElementById("rag-login");
const error = document.getElementById("rag-login-error");
form.addEventListener("submit", async (e) => {{
  e.preventDefault();
  const button = document.getElementById("rag-login-submit");
  button.disabled = true;
  error.textContent = "";
  try {{
    const r = await fetch("login", {{method: "POST", body: new URLSearchParams(new FormData(form)),
                                     credentials: "same-origin"}});
    if (r.ok) {{ location.reload(); return; }}
    error.textContent = r.status === 400 ? {wrong} : {failed};
  }} catch (_) {{
    error.textContent = {failed};
  }}
  button.disabled = false;
  document.getElementById("rag-login-password").select();
}});
</script></body></html>
"""


SSO = f"""
<p class="or">或</p>
<a id="rag-login-oidc" class="button sso" href="{OIDC_START}">{OIDC_BUTTON}</a>"""

MESSAGE_PAGE = """<!doctype html>
<html lang="zh-CN"><head>{style}
<title>{title} · 文档问答</title></head>
<body><main>
<h1>{title}</h1>
<p id="rag-oidc-error" role="alert">{message}</p>
<a id="rag-login-again" class="button" href="{back}">返回登录页</a>
</main></body></html>
"""


def login_page(ldap: bool = False, oidc: bool = False) -> str:
    """The page's HTML; `ldap` says that directory accounts may log in too, `oidc` adds
    the button of the department's single sign-on."""
    note = "请用管理员为您开设的账号登录。"
    if ldap:
        note += "也可以使用单位目录（LDAP）的用户名和密码。"
    return PAGE.format(
        style=STYLE,
        note=html.escape(note),
        sso=SSO if oidc else "",
        wrong=json.dumps(WRONG, ensure_ascii=False),
        failed=json.dumps(FAILED, ensure_ascii=False),
    )


def message_page(title: str, message: str, back: str = "../") -> str:
    """A page that says why a login did not succeed, with a way back to the login page
    (`back`, relative to the page's address)."""
    return MESSAGE_PAGE.format(
        style=STYLE, title=html.escape(title), message=html.escape(message),
        back=html.escape(back),
    )  # fmt: skip


def page_path(scope) -> str:
    """The request's path within Gradio's app (its root path, behind a proxy, taken off)."""
    root = (scope.get("root_path") or "").rstrip("/")
    path = scope.get("path") or "/"
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def open_session(gradio, response, username: str) -> None:
    """Log `username` in to Gradio's app `gradio` on `response` exactly as Gradio's own
    POST /login does after a right password (gradio/routes.py, `login`): a random token
    kept in `gradio.tokens`, set in its two cookies. So `gr.Request.username`, the
    `LoginPage` check and Gradio's /logout treat it as any other login."""
    token = secrets.token_urlsafe(16)
    gradio.tokens[token] = username
    response.set_cookie(
        key=f"access-token-{gradio.cookie_id}", value=token, httponly=True,
        samesite="none", secure=True,
    )  # fmt: skip
    response.set_cookie(key=f"access-token-unsecure-{gradio.cookie_id}", value=token, httponly=True)


class LoginPage:
    """ASGI middleware for Gradio's app: GET of the page by a visitor without a valid
    session gets `login_page` (Gradio's routes, /login and /logout included, are left
    alone). Gradio sets `scope["app"]` to its app, whose `tokens` are the sessions."""

    def __init__(self, app, ldap: bool = False, oidc: bool = False):
        self.app = app
        self.body = login_page(ldap, oidc).encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or not self._is_page(scope):
            return await self.app(scope, receive, send)
        gradio = scope.get("app")
        if getattr(gradio, "auth", None) is None or self._logged_in(scope, gradio):
            return await self.app(scope, receive, send)
        from starlette.responses import HTMLResponse

        response = HTMLResponse(self.body, headers={"Cache-Control": "no-store"})
        await response(scope, receive, send)

    @staticmethod
    def _is_page(scope) -> bool:
        return page_path(scope) == "/"

    @staticmethod
    def _logged_in(scope, gradio) -> bool:
        from starlette.requests import Request

        cookies = Request(scope).cookies
        cid = getattr(gradio, "cookie_id", "")
        token = cookies.get(f"access-token-{cid}") or cookies.get(f"access-token-unsecure-{cid}")
        return token is not None and token in getattr(gradio, "tokens", {})
