"""What a user may see of a failure: the message of our own errors with server paths
reduced to file names and no CLI flags, and for anything else a reference number (the
details go to the server's log under it), never a raw exception text."""

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


# What our messages tell a CLI user to run, as a web user is told it (the page and the
# HTTP APIs have no flags to pass); the first that matches a message is used
_CLI_HINTS = (
    (re.compile(r"[，；]?\s*或用 rag ingest --explain 查看清理了什么"), ""),
    (re.compile(r"先运行 rag ingest PATH --kb \S+?(?=[。；]|$)"), "请先上传文档"),
    (re.compile(r"请先 rag ingest PATH --kb NAME"), "请先上传文档"),
)
# A message still quoting a flag or a command gets this instead (the original is logged)
_CLI_LEFT = re.compile(r"(?<![\w-])--[a-z][\w-]*|`rag \w")
CLI_ONLY = "服务端的配置或索引有问题，无法完成这个操作；请联系管理员查看服务日志。"


def public_text(text: str) -> str:
    """One of our messages as a web page or HTTP client may see it: server paths reduced
    to file names, and no CLI flags or commands (`rag ingest --rebuild`), which mean
    nothing there; a hint that has a web equivalent is reworded to it."""
    text = hide_paths(text)
    for pattern, instead in _CLI_HINTS:
        text = pattern.sub(instead, text)
    if _CLI_LEFT.search(text):
        print(f"app: shown as a generic message: {text}", file=sys.stderr)
        return CLI_ONLY
    return text


def public_error(e: BaseException) -> str:
    """The text a user sees for `e`."""
    if isinstance(e, RagError):
        return public_text(str(e))
    ref = uuid.uuid4().hex[:8]
    print(f"app: error {ref}: {type(e).__name__}: {e}", file=sys.stderr)
    traceback.print_exception(e, file=sys.stderr)
    return f"服务内部出错（编号 {ref}），请稍后再试；如果一再出现，请把编号告诉管理员。"
