"""The OIDC login, end to end over real sockets: a small OpenID provider
(tests/oidc_provider.py: discovery, JWKS, authorize, token; RS256 ID tokens) and the real
chat server (`rag serve --ui` over a home, its accounts logging in), driven by an HTTP
client that follows redirects and keeps cookies, and once by a real browser.

A user the issuer vouches for who has an account here reaches the chat as that account,
in Gradio's own session; one without an account, a tampered state, a callback in another
browser, an ID token signed with another key, for another client or expired, and an
issuer that cannot be reached each end in a Chinese page, logged without secrets."""

from __future__ import annotations

import logging
import os
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from conftest import free_port, running_app
from oidc_provider import OidcProvider
from org_home import make_home
from test_api import _serve

from rag.config import Settings
from rag.errors import ConfigError
from rag.org.accounts import Accounts
from rag.org.audit import AuditLog
from rag.org.oidc import EXPIRED, INVALID, REFUSED, UNREACHABLE
from rag.serve.ui.login import OIDC_BUTTON

CLIENT_ID = "rag"
SECRET = "idp-client-secret-7f3a9c"
SECRET_ENV = "RAG_TEST_OIDC_SECRET"


def _oidc_settings(s: Settings, issuer: str, port: int) -> Settings:
    return s.replace(oidc_issuer=issuer, oidc_client_id=CLIENT_ID,
                     oidc_redirect_uri=f"http://127.0.0.1:{port}/auth/callback",
                     oidc_client_secret_env=SECRET_ENV)  # fmt: skip


def _serve_chat(s: Settings, embedder, port: int, tmp):
    """`rag serve --ui` over the home of `s`, its accounts logging in, on `port`."""
    from rag.serve.api import create_app
    from rag.serve.limits import account_login
    from rag.system import Embedders, KbSystems

    systems = KbSystems(s, Embedders(s, {s.embed_model: embedder}))
    app = create_app(systems.get("hr"), ui=True, ui_auth=account_login(s, 0.0),
                     ui_temp_dir=tmp, systems=systems, accounts=Accounts(s),
                     audit=AuditLog(s.home_path / "audit.db"))  # fmt: skip
    srv, thread, _url = _serve(app, port)
    return srv, thread


@pytest.fixture(scope="module")
def home(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("oidc")
    s = make_home(root, embedder)
    accounts = Accounts(s)
    accounts.add("li", "reader", ["hr"])  # no password: the department's login only
    accounts.add("boss", "admin")
    return s, root


@pytest.fixture(scope="module")
def chat(home, embedder):
    """(provider, chat URL): the chat server with its OIDC login through the provider."""
    s, root = home
    port = free_port()
    with OidcProvider(CLIENT_ID, SECRET, f"http://127.0.0.1:{port}/auth/callback") as idp:
        os.environ[SECRET_ENV] = SECRET
        try:
            srv, thread = _serve_chat(_oidc_settings(s, idp.issuer, port), embedder, port,
                                      root / "gradio-tmp")  # fmt: skip
        finally:
            os.environ.pop(SECRET_ENV, None)  # read once, at start
        try:
            yield idp, f"http://127.0.0.1:{port}"
        finally:
            srv.should_exit = True
            thread.join(15)


@pytest.fixture
def idp(chat):
    chat[0].reset()
    yield chat[0]
    chat[0].reset()


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, follow_redirects=True, timeout=60)


def _logged_in_as(client: httpx.Client) -> str | None:
    """Who Gradio's own session says the client is (its /user route)."""
    return client.get("/gradio_api/user").json()


def _secrets_logged(caplog, idp) -> list[str]:
    """The code, tokens and client secret of the flow, where they appear in the logs."""
    shown = caplog.text
    codes = [q.get("code", "") for _, path, q in idp.requests if path.endswith("/token")]
    return [x for x in [SECRET, *codes] if x and x in shown]


def test_a_user_with_an_account_logs_in_through_the_issuer(chat, idp, caplog):
    _, url = chat
    caplog.set_level(logging.INFO, logger="rag.serve.oidc")
    with _client(url) as c:
        page = c.get("/")
        assert 'id="rag-login"' in page.text and OIDC_BUTTON in page.text
        assert 'href="auth/oidc"' in page.text
        assert c.get("/config").status_code == 401
        r = c.get("/auth/oidc")  # the button: to the issuer, approved, back, into the chat
        hops = [str(h.url).split("?")[0] for h in r.history]
        assert hops == [url + "/auth/oidc", idp.discovery()["authorization_endpoint"],
                        url + "/auth/callback"]  # fmt: skip
        assert r.status_code == 200 and str(r.url) == url + "/"
        assert 'id="rag-login"' not in r.text and "gradio" in r.text.lower()
        assert _logged_in_as(c) == "li"  # Gradio's session, under the account's name
        assert c.get("/config").status_code == 200
        c.get("/logout")  # Gradio's own logout ends it
        assert _logged_in_as(c) is None and 'id="rag-login"' in c.get("/").text
    auth = next(q for _, path, q in reversed(idp.requests) if path.endswith("/auth"))
    assert auth["code_challenge_method"] == "S256" and len(auth["code_challenge"]) == 43
    assert auth["nonce"] and auth["state"] and auth["scope"] == "openid profile email"
    token = next(q for m, _, q in reversed(idp.requests) if m == "POST")
    assert token["code_verifier"] and "client_secret" not in token  # HTTP Basic, not the form
    assert "OIDC login: li" in caplog.text and not _secrets_logged(caplog, idp)


@pytest.mark.parametrize(
    "case, message, status, reason",
    [
        pytest.param(*p, id=p[0])
        for p in [
            ("no account", "rag user add ghost --role reader --kb", 403, "no account 'ghost'"),
            ("another key", INVALID, 400, "BadSignatureError"),
            ("another audience", INVALID, 400, "aud"),
            ("expired", INVALID, 400, "ExpiredTokenError"),
            ("another nonce", INVALID, 400, "nonce"),
            ("no username", "oidc_username_claim", 400, "preferred_username"),
            ("wrong client secret", REFUSED, 400, "invalid_client"),
        ]
    ],
)
def test_the_login_is_refused_with_a_chinese_page(chat, idp, caplog, case, message, status,
                                                   reason):  # fmt: skip
    _, url = chat
    now = int(time.time())
    if case == "no account":
        idp.user = "ghost"
    elif case == "another key":
        idp.signing_key = idp.other_key  # the same key id, but not the issuer's key
    elif case == "another audience":
        idp.claims = {"aud": "another-client"}  # azp stays ours: only aud is wrong
    elif case == "expired":
        idp.claims = {"exp": now - 3600, "iat": now - 7200, "auth_time": now - 7200}
    elif case == "another nonce":
        idp.claims = {"nonce": "not-the-one-sent"}
    elif case == "no username":
        idp.claims = {"preferred_username": None}
    elif case == "wrong client secret":
        idp.client_secret = "the-secret-the-issuer-now-expects"
    caplog.set_level(logging.INFO, logger="rag.serve.oidc")
    with _client(url) as c:
        r = c.get("/auth/oidc")
        assert r.status_code == status and str(r.url).startswith(url + "/auth/callback")
        assert "统一身份认证登录未成功" in r.text and message in r.text
        assert "Traceback" not in r.text and 'href="../"' in r.text  # back to the login page
        assert _logged_in_as(c) is None and c.get("/config").status_code == 401
    refused = [r.getMessage() for r in caplog.records if r.name == "rag.serve.oidc"]
    assert any(m.startswith("OIDC login refused:") and reason in m for m in refused), refused
    assert not _secrets_logged(caplog, idp)


def _to_callback(c: httpx.Client, idp) -> str:
    """Start a login and let the issuer approve it; the callback URL it sends back."""
    to_idp = c.get("/auth/oidc", follow_redirects=False)
    assert to_idp.status_code == 302
    back = httpx.get(to_idp.headers["location"], follow_redirects=False)
    assert back.status_code == 302
    return back.headers["location"]


def test_a_tampered_state_another_browser_or_a_replay_is_refused(chat, idp):
    _, url = chat
    with _client(url) as c:
        u = urlsplit(_to_callback(c, idp))
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        tampered = c.get(u.path + "?" + urlencode({**q, "state": "x" + q["state"][1:]}))
        assert tampered.status_code == 400 and EXPIRED in tampered.text
        assert _logged_in_as(c) is None
        with _client(url) as other:  # the right state and code, in a browser that did not ask
            stolen = other.get(u.path + "?" + u.query)
            assert stolen.status_code == 400 and EXPIRED in stolen.text
            assert _logged_in_as(other) is None
        u = urlsplit(_to_callback(c, idp))
        assert c.get(u.path + "?" + u.query).status_code == 200 and _logged_in_as(c) == "li"
        c.get("/logout")
        replay = c.get(u.path + "?" + u.query)  # a state is used once, even by its browser
        assert replay.status_code == 400 and EXPIRED in replay.text and _logged_in_as(c) is None
        denied = c.get(_to_callback(c, idp).replace("code=", "error=access_denied&code="))
        assert denied.status_code == 400 and REFUSED in denied.text


def test_an_unreachable_issuer_is_a_chinese_page(home, embedder, tmp_path, caplog):
    s, _ = home
    port = free_port()
    os.environ[SECRET_ENV] = SECRET
    try:
        s2 = _oidc_settings(s, f"http://127.0.0.1:{free_port()}/realms/city", port)
        srv, thread = _serve_chat(s2, embedder, port, tmp_path / "gradio-tmp")
    finally:
        os.environ.pop(SECRET_ENV, None)
    try:
        with _client(f"http://127.0.0.1:{port}") as c:
            r = c.get("/auth/oidc")
            assert r.status_code == 502 and UNREACHABLE in r.text and "Traceback" not in r.text
            assert "discovery at http://127.0.0.1:" in caplog.text and SECRET not in caplog.text
    finally:
        srv.should_exit = True
        thread.join(15)


def test_oidc_needs_its_settings_and_the_secret_in_the_environment(home, monkeypatch):
    from rag.org.oidc import OidcLogin

    s, _ = home
    with pytest.raises(ConfigError, match="oidc_client_id"):
        s.replace(oidc_issuer="https://sso.example.org/realms/city")
    with pytest.raises(ConfigError, match="auth/callback"):
        s.replace(oidc_issuer="https://sso.example.org/realms/city", oidc_client_id="rag",
                  oidc_redirect_uri="https://rag.example.org/callback")  # fmt: skip
    ok = _oidc_settings(s, "https://sso.example.org/realms/city", 8000)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(ConfigError, match=SECRET_ENV):
        OidcLogin(ok)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert OidcLogin(ok).issuer == "https://sso.example.org/realms/city"


@pytest.mark.slow
def test_app_py_over_a_home_logs_in_through_the_issuer(home, tmp_path):
    """`python app.py --home H --config FILE`: the OIDC settings from the settings file,
    the secret from the environment, the login as `rag serve --ui`'s."""
    s, _ = home
    port = free_port()
    with OidcProvider(CLIENT_ID, SECRET, f"http://127.0.0.1:{port}/auth/callback") as idp:
        config = tmp_path / "rag.toml"
        config.write_text(
            f'oidc_issuer = "{idp.issuer}"\noidc_client_id = "{CLIENT_ID}"\n'
            f'oidc_redirect_uri = "http://127.0.0.1:{port}/auth/callback"\n'
            f'oidc_client_secret_env = "{SECRET_ENV}"\n',
            encoding="utf-8",
        )
        env = {"RAG_HOME": None, "RAG_INDEX": None, "RAG_AUTH": None, SECRET_ENV: SECRET}
        args = ["--home", s.home, "--config", str(config)]
        with running_app(args, tmp_path / "app.log", env=env, port=port) as app:
            with _client(app.url.rstrip("/")) as c:
                assert OIDC_BUTTON in c.get("/").text
                r = c.get("/auth/oidc")
                assert r.status_code == 200 and 'id="rag-login"' not in r.text
                assert _logged_in_as(c) == "li"
            log = app.log.read_text(encoding="utf-8", errors="replace")
        assert f"OIDC login through {idp.issuer}" in log and SECRET not in log


@pytest.mark.slow
def test_login_through_the_issuer_in_a_real_browser(chat, idp):
    """The button on the login page, the issuer's redirects, and the chat as li: li's
    knowledge bases only, the documents of hr."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from test_app_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, open_tab, shot

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    _, url = chat
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(locale="zh-CN", viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(url)
            shot(page, "24_login_with_oidc_button")
            page.get_by_role("link", name=OIDC_BUTTON).click()
            page.wait_for_selector("#rag-question textarea")
            page.wait_for_function(
                "() => document.querySelector('#rag-history-note').textContent"
                ".includes('已登录为 li')"
            )
            page.locator("#rag-kbs input").click()
            options = page.get_by_role("option").all_inner_texts()
            assert [t.split("\n")[-1].strip() for t in options] == ["hr"]
            page.keyboard.press("Escape")
            open_tab(page, "知识库")
            docs = page.locator("#rag-docs")
            docs.get_by_text("杭州").first.wait_for()
            assert "嶗山" not in docs.inner_text()
            shot(page, "25_logged_in_through_oidc")
            page.locator("#rag-logout").click()
            idp.user = "ghost"  # the issuer knows them, this home does not
            page.get_by_role("link", name=OIDC_BUTTON).click()
            page.locator("#rag-oidc-error").get_by_text("rag user add ghost").wait_for()
            shot(page, "26_oidc_no_account")
            page.locator("#rag-login-again").click()
            page.wait_for_selector("#rag-login")
        finally:
            browser.close()
