"""The Gradio chat UI of `python app.py`, mounted at `/` of `rag serve`'s FastAPI app.

The UI shares the API's `Service` (one model, the same knowledge bases, the same
permissions and audit log). It has its own login (`USER:PASSWORD`, as `app.py --auth`,
or the home's accounts), which the API keys do not replace: a browser cannot send a
bearer key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from rag.config import Settings
from rag.errors import ConfigError
from rag.serve.limits import UploadRouteLimit, account_login, login_checker, upload_limiter
from rag.serve.ui.access import UiAccess
from rag.serve.ui.app import AppOptions, check_bind, listen_message, parse_auth


def mount_ui(app, system, auth: tuple[str, str] | Callable | None = None,
             temp_dir: Path | None = None, library=None, service=None):  # fmt: skip
    """Mount the chat UI over `system` at `/` of `app` (after the API routes: they match
    first). `auth` is one USER:PASSWORD login or a checker (`account_login`); `temp_dir`
    is where Gradio keeps uploads (see `use_upload_temp_dir`); `library` the one the APIs
    upload through (so both write under one lock), else a new one; `service` the APIs'
    (rag.serve.service): over a home, each login reads the knowledge bases it was granted."""
    import gradio as gr

    from rag.serve.ui.handlers import example_questions
    from rag.serve.ui.layout import build_app, ui_i18n
    from rag.serve.ui.library import Library, data_dir
    from rag.serve.ui.render import CSS

    settings = system.settings
    root = data_dir(settings)
    library = library or Library(system, root / "uploads", root / "feedback.jsonl", temp_dir)
    docs = system.index.docs
    examples = example_questions(set(docs), {k: v.get("title") or k for k, v in docs.items()})
    home = service is not None and service.systems is not None
    access = UiAccess(service) if home else bare_access(library, getattr(service, "audit", None))
    demo = build_app(library, examples, access=access, logout=auth is not None)
    demo.queue(default_concurrency_limit=4)
    app.add_middleware(
        UploadRouteLimit, limiter=upload_limiter(settings), max_file_mb=settings.max_file_mb
    )
    return gr.mount_gradio_app(
        app,
        demo,
        path="/",
        auth=(
            auth
            if callable(auth)
            else login_checker(dict([auth]), settings.login_delay_s)
            if auth
            else None
        ),
        max_file_size=int(settings.max_file_mb * 2**20),
        css=CSS,
        i18n=ui_i18n(),
        footer_links=[],
        run_history=False,
        show_error=False,
        app_kwargs={"middleware": login_middleware(settings, access)} if auth else None,
    )


def login_middleware(settings: Settings, access: UiAccess) -> list:
    """The page's login in front of Gradio's app: the Chinese login page and, when the
    logins are the home's accounts and `oidc_issuer` is set, the OIDC routes
    (rag.serve.ui.oidc). Raises ConfigError when OIDC is configured but cannot work."""
    from starlette.middleware import Middleware

    from rag.serve.ui.login import LoginPage

    oidc = bool(settings.oidc_issuer) and access.accounts is not None
    if settings.oidc_issuer and not oidc:
        print(
            "oidc_issuer is set, but this page logs in one USER:PASSWORD (--auth) or serves "
            "a bare index (--index): the OIDC login is off",
            file=sys.stderr,
            flush=True,
        )
    out = [Middleware(LoginPage, ldap=bool(settings.ldap_url), oidc=oidc)]
    if oidc:
        from rag.org.oidc import OidcLogin
        from rag.serve.ui.oidc import OidcRoutes

        out.append(Middleware(OidcRoutes, login=OidcLogin(settings)))
        print(
            f"OIDC login through {settings.oidc_issuer} (client {settings.oidc_client_id}); "
            f"the issuer sends users back to {settings.oidc_redirect_uri}",
            file=sys.stderr,
            flush=True,
        )
    return out


# =========================================================================== app.py
def bare_access(library, audit=None) -> UiAccess:
    """The page's access over one loaded library (one bare index, the knowledge base
    `default`), whose one login or nobody reads and changes everything."""
    from rag.serve.service import Service

    service = Service(library.system, no_auth=True, temp_dir=library.temp_dir, audit=audit)
    service.knowledge_base(None)._library = library  # the page's, with its feedback file
    return UiAccess(service)


def uses_accounts(settings: Settings, auth) -> bool:
    """Whether the app logs in the home's accounts: no USER:PASSWORD and no bare index
    given, and the home has accounts (`rag user add`)."""
    if auth is not None or settings.index_dir:
        return False
    from rag.org.accounts import Accounts

    return (settings.home_path / "org.db").is_file() and bool(Accounts(settings).list())


def _home_access(settings: Settings, upload_tmp: Path):
    """The home's knowledge bases, accounts and audit log behind the page."""
    from rag.org.accounts import Accounts
    from rag.org.audit import AuditLog
    from rag.serve.service import Service
    from rag.system import KbSystems

    systems = KbSystems(settings)
    names = systems.names()
    if not names:
        raise ConfigError(
            f"{settings.home_path}：还没有建好的知识库，请先运行 rag ingest PATH --kb NAME。"
        )
    system = systems.get(names[0])
    service = Service(system, systems=systems, accounts=Accounts(settings),
                      audit=AuditLog(settings.home_path / "audit.db"), temp_dir=upload_tmp)  # fmt: skip
    return service.knowledge_base(names[0]).library, UiAccess(service)


def run(opts: AppOptions) -> int:
    """Load (building if needed) the index, then serve the app until interrupted."""
    from rag.serve.ui.library import use_upload_temp_dir  # before gradio is imported

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = parse_auth(opts.auth if opts.auth is not None else os.environ.get("RAG_AUTH"))
    home = {"home": opts.home} if opts.home else {}
    settings = Settings.load(opts.config, index_dir=opts.index_dir, **home)
    accounts = uses_accounts(settings, auth)
    check_bind(opts.host, auth, accounts)
    upload_tmp = use_upload_temp_dir(settings)

    from rag.org.audit import AuditLog
    from rag.serve.ui.handlers import example_questions
    from rag.serve.ui.layout import build_app, ui_i18n
    from rag.serve.ui.library import Library, data_dir, ensure_index
    from rag.serve.ui.render import CSS
    from rag.system import load_system, make_embedder

    if accounts:  # each login reads the knowledge bases it was granted
        library, access = _home_access(settings, upload_tmp)
        system = library.system
        checker = account_login(settings, settings.login_delay_s)
    else:
        embedder = make_embedder(settings)
        ensure_index(settings, opts.corpus_dir, embedder=embedder)
        system = load_system(settings, embedder=embedder)
        root = data_dir(settings)
        feedback = Path(opts.feedback) if opts.feedback else root / "feedback.jsonl"
        library = Library(system, root / "uploads", feedback, upload_tmp)
        # every question goes into the home's audit log, a login's under its name, else
        # as anonymous (rag.org.audit.ANONYMOUS); its conversations into the home too
        access = bare_access(library, AuditLog(settings.home_path / "audit.db"))
        checker = login_checker(dict([auth]), settings.login_delay_s) if auth else None
    login_page = login_middleware(settings, access) if checker else []  # OIDC checked now
    print("Loading the embedding model ...", file=sys.stderr, flush=True)
    system.embedder.embed_query("预热")  # load the model now, not on the first question
    feedback = library.feedback_path
    docs = system.index.docs
    examples = example_questions(set(docs), {k: v.get("title") or k for k, v in docs.items()})

    import gradio as gr
    from starlette.middleware import Middleware

    demo = build_app(library, examples, access=access, logout=checker is not None)
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
    print(listen_message(opts.host, opts.port, auth, accounts), file=sys.stderr, flush=True)
    demo.launch(
        server_name=opts.host,
        server_port=opts.port,
        auth=checker,
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
                ),
                *login_page,
            ]
        },
    )
    return 0
