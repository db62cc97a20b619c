"""`rag serve`'s per-key rate limit (429, Retry-After, Chinese JSON) and CORS, which is
off unless origins are configured, against real uvicorn servers over the corpus index."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from test_api import KEY, OTHER_KEY, _serve

from rag.config import Settings
from rag.errors import ConfigError
from rag.serve.api import create_app

ORIGIN = "https://chat.example.org"


@pytest.fixture
def served(corpus_system):
    """Serve the corpus system with some settings changed; yields a function of them."""
    running = []

    def serve(**changes) -> str:
        system = dataclasses.replace(
            corpus_system, settings=corpus_system.settings.replace(**changes)
        )
        srv, thread, url = _serve(create_app(system, [KEY, OTHER_KEY]))
        running.append((srv, thread))
        return url

    yield serve
    for srv, thread in running:
        srv.should_exit = True
        thread.join(15)


def _get(url: str, key: str = KEY, path: str = "/v1/models", **headers) -> httpx.Response:
    return httpx.get(url + path, headers={"Authorization": f"Bearer {key}", **headers})


def test_a_key_past_its_requests_per_minute_gets_429_with_retry_after(served):
    url = served(api_requests_per_minute=3)
    assert [_get(url).status_code for _ in range(3)] == [200, 200, 200]
    over = _get(url)
    assert over.status_code == 429
    wait = int(over.headers["retry-after"])
    assert 1 <= wait <= 60
    err = over.json()["error"]
    assert err["code"] == "rate_limit_exceeded" and "每分钟最多 3 次" in err["message"]
    assert _get(url, OTHER_KEY).status_code == 200  # the limit is per key
    dify = httpx.post(
        url + "/retrieval",
        json={"knowledge_id": "default", "query": "q", "retrieval_setting": {"top_k": 1}},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert dify.status_code == 429 and dify.json()["error_code"] == 429
    assert "请求过于频繁" in dify.json()["error_msg"]
    assert httpx.get(url + "/healthz").status_code == 200  # not an API route: no limit


def test_the_openai_client_sees_a_rate_limit_error(served):
    from openai import OpenAI, RateLimitError

    url = served(api_requests_per_minute=1)
    client = OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    client.models.list()
    with pytest.raises(RateLimitError):
        client.models.list()


def test_no_cors_unless_origins_are_configured(served):
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    closed = served()
    r = httpx.options(closed + "/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in _get(closed, Origin=ORIGIN).headers

    open_ = served(cors_origins=(ORIGIN,))
    r = httpx.options(open_ + "/v1/chat/completions", headers=preflight)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    got = _get(open_, Origin=ORIGIN)
    assert got.status_code == 200 and got.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.options(
        open_ + "/v1/chat/completions", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in _get(open_, Origin="https://evil.example").headers


def test_cors_origins_come_from_the_settings_file_and_are_checked(tmp_path):
    f = tmp_path / "rag.toml"
    f.write_text(
        'cors_origins = ["https://chat.example.org", "http://127.0.0.1:3000"]\n'
        "api_requests_per_minute = 30\n",
        encoding="utf-8",
    )
    s = Settings.load(f)
    assert s.cors_origins == ("https://chat.example.org", "http://127.0.0.1:3000")
    assert s.api_requests_per_minute == 30 and Settings().cors_origins == ()
    with pytest.raises(ConfigError, match="not an origin"):
        Settings(cors_origins=("chat.example.org",))
    with pytest.raises(ConfigError, match="not an origin"):
        Settings(cors_origins=("https://chat.example.org/page",))
    with pytest.raises(ConfigError, match="api_requests_per_minute"):
        Settings(api_requests_per_minute=-1)


def test_a_keyless_server_takes_requests_from_this_machine_only(corpus_system):
    """--no-auth (loopback only): a web page elsewhere must not use it, neither by a
    cross-site form post (no preflight) nor through a name of its own that resolves to
    127.0.0.1 (DNS rebinding)."""
    srv, thread, url = _serve(create_app(corpus_system, no_auth=True))
    try:
        assert httpx.get(url + "/v1/models").status_code == 200
        page = httpx.get(url + "/v1/models", headers={"Origin": "http://localhost:3000"})
        assert page.status_code == 200
        evil = {"Origin": "https://evil.example"}
        r = httpx.post(url + "/api/documents", headers=evil,
                       files=[("files", ("x.txt", "恶意内容。".encode(), "text/plain"))])  # fmt: skip
        assert r.status_code == 403 and "跨站" in r.json()["error"]["message"]
        rebound = httpx.get(url + "/api/documents", headers={"Host": "evil.example:8000"})
        assert rebound.status_code == 403
        assert httpx.get(url + "/healthz", headers={"Host": "evil.example"}).status_code == 200
    finally:
        srv.should_exit = True
        thread.join(15)
    assert len(corpus_system.index.docs) == 5
