"""The Gradio chat UI of `python app.py`, mounted at `/` of `rag serve`'s FastAPI app.

The UI shares the API's loaded system (one model, one index). It can upload and remove
documents, so it has its own login (`USER:PASSWORD`, as `app.py --auth`), which the API
keys do not replace: a browser cannot send a bearer key.
"""

from __future__ import annotations

from pathlib import Path


def mount_ui(app, system, auth: tuple[str, str] | None = None, temp_dir: Path | None = None,
             library=None):  # fmt: skip
    """Mount the chat UI over `system` at `/` of `app` (after the API routes: they match
    first). `temp_dir` is where Gradio keeps uploads (see `use_upload_temp_dir`); `library`
    the one the APIs upload through (so both write under one lock), else a new one."""
    import gradio as gr

    from rag.serve.limits import UploadRouteLimit, login_checker, upload_limiter
    from rag.serve.ui.handlers import example_questions
    from rag.serve.ui.layout import build_app
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
        auth=login_checker(dict([auth]), settings.login_delay_s) if auth else None,
        max_file_size=int(settings.max_file_mb * 2**20),
        css=CSS,
        footer_links=[],
        run_history=False,
        show_error=False,
    )
