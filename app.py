"""Chat with the documents in a browser: `python app.py [--host H] [--port P] [--index DIR]`.

Serves the Gradio app on 127.0.0.1:7860 by default, over the index in --index (built
from --corpus first when there is none). Another --host needs --auth, and the app says at
start where it listens and that a login is required. Uploads, feedback and Gradio's copies
of uploaded files (unless $GRADIO_TEMP_DIR is set) stay in the data folder beside the
index. The app itself lives in `rag.serve.ui` and is wired up by `rag.serve.api_ui.run`.
"""

from __future__ import annotations

import argparse
import sys

from rag.errors import RagError
from rag.serve.api_ui import run
from rag.serve.ui.app import DEFAULT_HOST, DEFAULT_PORT, AppOptions
from rag.serve.ui.library import DEFAULT_CORPUS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="app.py", description="文档问答：在浏览器里向自己的文档提问。")
    p.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--index", help="index directory (default .rag/index or $RAG_INDEX)")
    p.add_argument(
        "--corpus",
        default=str(DEFAULT_CORPUS),
        help="folder to build the index from when there is none yet (default: the repo's corpus/)",
    )
    p.add_argument("--config", help="settings file (TOML)")
    p.add_argument(
        "--home",
        help="the home whose accounts log in and whose knowledge bases are served "
        "(default $RAG_HOME or .rag/; used when it has accounts and no --index/--auth is given)",
    )
    p.add_argument(
        "--feedback", help="feedback JSONL file (default: feedback.jsonl beside the index)"
    )
    p.add_argument(
        "--auth",
        help="USER:PASSWORD required to use the app (or $RAG_AUTH); needed for a --host other than localhost",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = AppOptions(
        host=args.host,
        port=args.port,
        index_dir=args.index,
        corpus_dir=args.corpus,
        config=args.config,
        feedback=args.feedback,
        auth=args.auth,
        home=args.home,
    )
    try:
        return run(opts)
    except RagError as e:
        print(f"app: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
