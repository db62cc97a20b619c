"""The chat web app (Gradio): one shared system, independent sessions, cited answers.

`rag.serve.api_ui.run(AppOptions)` is what `python app.py` calls: it wires the page to
the `Service` the HTTP APIs use (this package never imports the service, which imports
it). The process loads one `RagSystem` (index and embedding model, once; over a home,
one per knowledge base) and wraps it in a `Library`, which also owns uploads and
removals; `rag.serve.ui.access` says what each login may read and change. Each browser session gets its own `ChatState` (history, settings,
answerer) in a `gr.State`, so nothing one user does changes another's chat or settings.

Everything that decides what the user sees is plain Python here (rendering, uploads,
sessions) and is tested without a browser; `build_app` only lays out the widgets and
wires them to it. All document and answer text goes through `html.escape` before it is
put into HTML: documents may contain markup.
"""

from dataclasses import dataclass

from rag.errors import ConfigError
from rag.serve.ui.library import DEFAULT_CORPUS

DEFAULT_HOST = "127.0.0.1"


DEFAULT_PORT = 7860


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


# =========================================================================== startup
@dataclass(frozen=True)
class AppOptions:
    """What `python app.py` was asked to do."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    index_dir: str | None = None
    corpus_dir: str | None = str(DEFAULT_CORPUS)
    config: str | None = None
    feedback: str | None = None
    auth: str | None = None  # "user:password"; also $RAG_AUTH
    home: str | None = None  # the home whose accounts log in (default $RAG_HOME, .rag/)


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """`"user:password"` as a tuple; None for no auth. Raises ConfigError when malformed."""
    if value is None or value == "":
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth (or RAG_AUTH) must look like USER:PASSWORD, both non-empty")
    return user, password


def check_bind(host: str, auth: tuple[str, str] | None, accounts: bool = False) -> None:
    """Refuse to listen beyond this machine without a password: the app can change the index.
    A home's accounts (`accounts`) are a login."""
    if host not in LOCAL_HOSTS and auth is None and not accounts:
        raise ConfigError(
            f"refusing to listen on {host} without a password: anyone who can reach it could "
            "read and change the knowledge base; pass --auth USER:PASSWORD (or set RAG_AUTH), "
            f"or use --host {DEFAULT_HOST}"
        )


def listen_message(
    host: str, port: int, auth: tuple[str, str] | None, accounts: bool = False
) -> str:
    """The startup line that says where the app listens and whether a login is needed.

    Names the user, never the password.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    scope = " (this machine only)" if host in LOCAL_HOSTS else ""
    login = f"login required (user {auth[0]})" if auth else "no login"
    if accounts:
        login = "login required (the home's accounts)"
    return f"Listening on {where}{scope}; {login}"
