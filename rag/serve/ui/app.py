"""The chat web app (Gradio): one shared system, independent sessions, cited answers.

`run(AppOptions)` is what `python app.py` calls. The process loads one `RagSystem`
(index and embedding model, once) and wraps it in a `Library`, which also owns uploads
and removals. Each browser session gets its own `ChatState` (history, settings,
answerer) in a `gr.State`, so nothing one user does changes another's chat or settings.

Everything that decides what the user sees is plain Python here (rendering, uploads,
sessions) and is tested without a browser; `build_app` only lays out the widgets and
wires them to it. All document and answer text goes through `html.escape` before it is
put into HTML: documents may contain markup.
"""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.errors import ConfigError
from rag.serve.limits import UploadRouteLimit, login_checker, upload_limiter
from rag.serve.ui.handlers import example_questions
from rag.serve.ui.layout import build_app, ui_i18n
from rag.serve.ui.library import (
    DEFAULT_CORPUS,
    Library,
    data_dir,
    ensure_index,
    use_upload_temp_dir,
)
from rag.serve.ui.render import CSS

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


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """`"user:password"` as a tuple; None for no auth. Raises ConfigError when malformed."""
    if value is None or value == "":
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth (or RAG_AUTH) must look like USER:PASSWORD, both non-empty")
    return user, password


def check_bind(host: str, auth: tuple[str, str] | None) -> None:
    """Refuse to listen beyond this machine without a password: the app can change the index."""
    if host not in LOCAL_HOSTS and auth is None:
        raise ConfigError(
            f"refusing to listen on {host} without a password: anyone who can reach it could "
            "read and change the knowledge base; pass --auth USER:PASSWORD (or set RAG_AUTH), "
            f"or use --host {DEFAULT_HOST}"
        )


def listen_message(host: str, port: int, auth: tuple[str, str] | None) -> str:
    """The startup line that says where the app listens and whether a login is needed.

    Names the user, never the password.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    scope = " (this machine only)" if host in LOCAL_HOSTS else ""
    login = f"login required (user {auth[0]})" if auth else "no login"
    return f"Listening on {where}{scope}; {login}"


def run(opts: AppOptions) -> int:
    """Load (building if needed) the index, then serve the app until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = parse_auth(opts.auth if opts.auth is not None else os.environ.get("RAG_AUTH"))
    check_bind(opts.host, auth)
    settings = Settings.load(opts.config, index_dir=opts.index_dir)
    upload_tmp = use_upload_temp_dir(settings)

    from rag.system import load_system, make_embedder

    embedder = make_embedder(settings)
    ensure_index(settings, opts.corpus_dir, embedder=embedder)
    system = load_system(settings, embedder=embedder)
    print("Loading the embedding model ...", file=sys.stderr, flush=True)
    system.embedder.embed_query("预热")  # load the model now, not on the first question
    root = data_dir(settings)
    feedback = Path(opts.feedback) if opts.feedback else root / "feedback.jsonl"
    library = Library(system, root / "uploads", feedback, upload_tmp)
    docs = system.index.docs
    examples = example_questions(set(docs), {k: v.get("title") or k for k, v in docs.items()})

    import gradio as gr
    from starlette.middleware import Middleware

    demo = build_app(library, examples)
    demo.queue(default_concurrency_limit=4)
    theme = gr.themes.Default(
        font=[
            "Source Sans Pro",
            "Noto Sans CJK SC",
            "WenQuanYi Micro Hei",
            "PingFang SC",
            "Microsoft YaHei",
            "sans-serif",
        ]
    )
    print(
        f"Feedback goes to {feedback}; uploads to {library.uploads_dir} "
        f"(upload temp files in {upload_tmp})",
        file=sys.stderr,
        flush=True,
    )
    print(listen_message(opts.host, opts.port, auth), file=sys.stderr, flush=True)
    demo.launch(
        server_name=opts.host,
        server_port=opts.port,
        auth=login_checker(dict([auth]), settings.login_delay_s) if auth else None,
        max_file_size=int(settings.max_file_mb * 2**20),
        css=CSS,
        i18n=ui_i18n(),
        theme=theme,
        footer_links=[],
        run_history=False,
        show_error=False,  # handlers say what went wrong in Chinese; never a raw exception
        app_kwargs={
            "middleware": [  # the route has its own budget: a chat upload passes both
                Middleware(
                    UploadRouteLimit,
                    limiter=upload_limiter(settings),
                    max_file_mb=settings.max_file_mb,
                )
            ]
        },
    )
    return 0
