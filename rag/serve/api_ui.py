"""The Gradio chat UI of `python app.py`, mounted at `/` of `rag serve`'s FastAPI app.

The UI shares the API's loaded system (one model, one index). It can upload and remove
documents, so it has its own login (`USER:PASSWORD`, as `app.py --auth`), which the API
keys do not replace: a browser cannot send a bearer key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

MAX_LOGIN_LOCKS = 1024  # one per name tried; forgotten past this many (any name can be tried)


def account_login(settings, kb: str, delay_s: float) -> Callable[[str, str], object]:
    """Gradio's `auth` over a home's accounts: a local password (argon2), else LDAP when
    configured (rag.org.ldap_auth.login), of an editor or admin of `kb` -- the UI adds
    and removes its documents, which a reader may not. One try at a time per name and
    `delay_s` after each failure, as `rag.serve.limits.login_checker`."""
    from rag.errors import AuthError, NotFoundError
    from rag.org.ldap_auth import login

    locks: dict[str, asyncio.Lock] = {}

    def allowed(username: str, password: str) -> bool:
        try:
            return login(settings, username, password).may_edit(kb)
        except (AuthError, NotFoundError):
            return False

    async def check(username: str, password: str) -> bool:
        if len(locks) > MAX_LOGIN_LOCKS:
            locks.clear()
        async with locks.setdefault(username, asyncio.Lock()):
            ok = await asyncio.to_thread(allowed, username, password)  # argon2 takes ~50 ms
            if not ok:
                await asyncio.sleep(delay_s)
            return ok

    return check


def mount_ui(app, system, auth: tuple[str, str] | Callable | None = None,
             temp_dir: Path | None = None, library=None):  # fmt: skip
    """Mount the chat UI over `system` at `/` of `app` (after the API routes: they match
    first). `auth` is one USER:PASSWORD login or a checker (`account_login`); `temp_dir`
    is where Gradio keeps uploads (see `use_upload_temp_dir`); `library` the one the APIs
    upload through (so both write under one lock), else a new one."""
    import gradio as gr

    from rag.serve.limits import UploadRouteLimit, login_checker, upload_limiter
    from rag.serve.ui.handlers import example_questions
    from rag.serve.ui.layout import build_app, ui_i18n
    from rag.serve.ui.library import Library, data_dir
    from rag.serve.ui.render import CSS

    settings = system.settings
    root = data_dir(settings)
    library = library or Library(system, root / "uploads", root / "feedback.jsonl", temp_dir)
    docs = system.index.docs
    examples = example_questions(set(docs), {k: v.get("title") or k for k, v in docs.items()})
    demo = build_app(library, examples)
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
    )
