"""Where in a document a passage is: the path of the headings above it.

DOCX headings (Title, Heading 1-9), Markdown's # ... ###### and HTML's h1-h6 give each
line the headings it is under, "一、总体要求 › （二）主要目标", recorded as a location
(`[offset, path, "section"]`, the form of every loader's locations) wherever the path
changes, so a citation can say which section it quotes. The document's own title
(DOCX's Title style, or a first heading that no later heading equals or outranks) is
not part of any path: every citation already shows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SEP = " › "
SECTION = "section"  # marks a location as a heading path (rag.index.hybrid.location)


def is_title(levels: Sequence[int]) -> bool:
    """Whether the first of the document's headings (their levels, in order; 0 = the
    Title style) is the document's title rather than its first section."""
    return bool(levels) and (levels[0] == 0 or all(lv > levels[0] for lv in levels[1:]))


class HeadingPath:
    """The headings above the current line, updated heading by heading."""

    def __init__(self, levels: Sequence[int]):
        self._skip_first = is_title(levels)
        self._seen = 0
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, text: str) -> None:
        """A heading of `level` (1 = top; 0 = the Title style) starts here."""
        first = self._seen == 0
        self._seen += 1
        text = " ".join(text.split())
        if level == 0 or (first and self._skip_first) or not text:
            return
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text))

    @property
    def path(self) -> str:
        return SEP.join(text for _, text in self._stack)


def heading_locations(headings: Iterable[tuple[int, int, str]]) -> list[list]:
    """[[offset, path, "section"], ...] from each heading's (offset, level, text), in
    order; text before the first section is located as "". Empty when no heading makes
    a path (none, or only the title)."""
    headings = list(headings)
    path = HeadingPath([level for _, level, _ in headings])
    out: list[list] = [[0, "", SECTION]]
    for at, level, text in headings:
        path.enter(level, text)
        if path.path == out[-1][1]:
            continue
        if out[-1][0] == at:
            out[-1][1] = path.path
        else:
            out.append([at, path.path, SECTION])
    return out if any(loc[1] for loc in out) else []
