"""What a user may see of a failure: the message of our own errors with server paths
reduced to file names, and for anything else a reference number (the details go to the
server's log under it), never a raw exception text."""

from __future__ import annotations

import re
import sys
import traceback
import uuid

from rag.errors import RagError

# an absolute POSIX or Windows path (not a URL's path: no scheme, host or word before it)
_SEP = r"[/\\]"
_PART = r"[^\s/\\'\"<>|，。；：、）)\]】]+"
_PATH = re.compile(rf"(?<![\w:/.\\])(?:[A-Za-z]:\\|/)(?:{_PART}{_SEP})+({_PART})?")


def hide_paths(text: str) -> str:
    """`text` with every absolute server path replaced by its last part (the file name)."""
    return _PATH.sub(lambda m: m.group(1) or "…", text)


def public_error(e: BaseException) -> str:
    """The text a user sees for `e`."""
    if isinstance(e, RagError):
        return hide_paths(str(e))
    ref = uuid.uuid4().hex[:8]
    print(f"app: error {ref}: {type(e).__name__}: {e}", file=sys.stderr)
    traceback.print_exception(e, file=sys.stderr)
    return f"服务内部出错（编号 {ref}），请稍后再试；如果一再出现，请把编号告诉管理员。"
