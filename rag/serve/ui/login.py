"""The login page: Chinese in every browser, in front of Gradio's own.

Gradio checks names and passwords itself (`auth=`, POST /login, its session cookie) but
draws its login form in the browser's language ("Incorrect Credentials" in an English
one). `LoginPage`, an ASGI middleware on Gradio's app, answers a visitor without a valid
session with this page instead; the page posts to Gradio's /login, so the check, the
cookie, the delay after a failure (rag.serve.limits) and /logout stay Gradio's.
"""

from __future__ import annotations

import html

WRONG = "用户名或密码不正确。"
FAILED = "暂时无法登录，请稍后再试。"

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>登录 · 文档问答</title>
<style>
body {{ font-family: "Source Sans Pro", "Noto Sans CJK SC", "WenQuanYi Micro Hei",
  "PingFang SC", "Microsoft YaHei", sans-serif; background: #f3f4f6; margin: 0; }}
main {{ max-width: 360px; margin: 12vh auto; background: #fff; border-radius: 12px;
  padding: 2em; box-shadow: 0 2px 12px rgba(0,0,0,.08); }}
h1 {{ font-size: 1.4em; margin: 0 0 .3em; }}
p.note {{ color: #4b5563; font-size: .9em; }}
label {{ display: block; margin: 1em 0 .3em; font-weight: 600; }}
input {{ width: 100%; box-sizing: border-box; padding: .6em; font-size: 1em;
  border: 1px solid #d1d5db; border-radius: 8px; }}
button {{ margin-top: 1.5em; width: 100%; padding: .7em; font-size: 1em; border: 0;
  border-radius: 8px; background: #f97316; color: #fff; cursor: pointer; }}
button:disabled {{ opacity: .6; }}
#rag-login-error {{ color: #991b1b; min-height: 1.5em; margin: 1em 0 0; }}
</style></head>
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
</form></main>
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


def login_page(ldap: bool = False) -> str:
    """The page's HTML; `ldap` says that directory accounts may log in too."""
    import json

    note = "请用管理员为您开设的账号登录。"
    if ldap:
        note += "也可以使用单位目录（LDAP）的用户名和密码。"
    return PAGE.format(
        note=html.escape(note),
        wrong=json.dumps(WRONG, ensure_ascii=False),
        failed=json.dumps(FAILED, ensure_ascii=False),
    )


class LoginPage:
    """ASGI middleware for Gradio's app: GET of the page by a visitor without a valid
    session gets `login_page` (Gradio's routes, /login and /logout included, are left
    alone). Gradio sets `scope["app"]` to its app, whose `tokens` are the sessions."""

    def __init__(self, app, ldap: bool = False):
        self.app = app
        self.body = login_page(ldap).encode("utf-8")

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
        root = (scope.get("root_path") or "").rstrip("/")
        path = scope.get("path") or "/"
        if root and path.startswith(root):
            path = path[len(root) :]
        return path in ("", "/")

    @staticmethod
    def _logged_in(scope, gradio) -> bool:
        from starlette.requests import Request

        cookies = Request(scope).cookies
        cid = getattr(gradio, "cookie_id", "")
        token = cookies.get(f"access-token-{cid}") or cookies.get(f"access-token-unsecure-{cid}")
        return token is not None and token in getattr(gradio, "tokens", {})
