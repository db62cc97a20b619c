"""Text normalisation for matching, with a map back to the original characters.

The original text is what users see and what citations quote; the normalised form
(traditional -> simplified, full-width ASCII -> half-width, lower case, collapsed
white space) is what BM25 and the embedder see. `normalize` is the one function used
at index time and at query time, so a simplified question finds a traditional document.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

# Pinyin glosses some pages insert after a character: 區(qū), 規(guī)劃. They split words for
# jieba and the embedder, so matching skips them (the original keeps them for display).
_PINYIN_GLOSS = re.compile(
    r"(?<=[\u3400-\u9fff])[(（][a-zA-Zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ]{1,7}[)）]"
)


def without_glosses(text: str) -> str:
    """`text` without inline pinyin glosses (嶗山區(qū) -> 嶗山區): what an answer shows."""
    return _PINYIN_GLOSS.sub("", text) if "(" in text or "（" in text else text


class Normalized(NamedTuple):
    text: str
    offsets: list[int]  # offsets[i] = index in the original of normalised char i

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original [start, end) covering normalised [start, end)."""
        if start >= end or not self.offsets:
            o = self.offsets[min(start, len(self.offsets) - 1)] if self.offsets else 0
            return o, o
        return self.offsets[start], self.offsets[end - 1] + 1


@functools.lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional -> simplified (OpenCC t2s); length-preserving, falls back per char."""
    if not text:
        return text
    out = _t2s().convert(text)
    if len(out) == len(text):
        return out
    # Phrase rules changed the length somewhere: convert char by char to keep a 1:1 map.
    conv = _t2s().convert
    return "".join(c2 if len(c2 := conv(c)) == 1 else c for c in text)


def _width_fold(c: str) -> str:
    o = ord(c)
    if 0xFF01 <= o <= 0xFF5E:  # full-width ASCII block
        return chr(o - 0xFEE0)
    if o == 0x3000:  # ideographic space
        return " "
    return c


def normalize(text: str) -> Normalized:
    """Normalise `text` for matching and return the offset map into the original.

    >>> normalize("嶗山區　ＡＢＣ１２３").text
    '崂山区 abc123'
    """
    simp = to_simplified(text)
    skip = set()
    if "(" in simp or "（" in simp:
        for m in _PINYIN_GLOSS.finditer(simp):
            skip.update(range(m.start(), m.end()))
    out: list[str] = []
    offsets: list[int] = []
    pending_space = -1
    for i, c in enumerate(simp):
        if skip and i in skip:
            continue
        c = _width_fold(c)
        if c.isspace():
            if out and pending_space < 0:
                pending_space = i
            continue
        if pending_space >= 0:
            out.append(" ")
            offsets.append(pending_space)
            pending_space = -1
        out.append(c.lower() if c.isascii() else c)
        offsets.append(i)
    return Normalized("".join(out), offsets)


# `normalize` without the offset map. Regex substitutions, not str.translate: that looks
# up every character of the text, and Chinese text has a full-width comma every few words.
_WIDE = re.compile("[\uff01-\uff5e\u3000]")
_WIDE_FOLD = {chr(o): chr(o - 0xFEE0) for o in range(0xFF01, 0xFF5F)} | {"\u3000": " "}
_UPPER = re.compile("[A-Z]+")
_SPACES = re.compile(r"\s+")  # \s is exactly str.isspace() for str patterns


def _lower(m: re.Match) -> str:
    return m.group().lower()


def _fold(m: re.Match) -> str:
    return _WIDE_FOLD[m.group()]


def norm(text: str) -> str:
    """Just the normalised string: `normalize(text).text`, several times faster.

    Ingestion normalises every chunk and needs no offsets, so this skips building them
    (a few regex passes instead of a loop over characters).
    """
    simp = to_simplified(text)
    if "(" in simp or "（" in simp:
        simp = _PINYIN_GLOSS.sub("", simp)
    simp = _UPPER.sub(_lower, _WIDE.sub(_fold, simp))
    return _SPACES.sub(" ", simp).strip()


# --------------------------------------------------------------------------- metadata
# brackets of every style fold to one, so "青政发[2023]5号" finds "青政发〔2023〕5号"
_BRACKETS = str.maketrans("〔【［[（〕】］]）", "((((()))))")


def meta_key(value: object) -> str:
    """A metadata value as filters compare it (`Filters.where`): normalised (`norm`),
    without blanks, one bracket style. Stores keep this form of the fields they filter on."""
    return norm(str(value)).translate(_BRACKETS).replace(" ", "")


# --------------------------------------------------------------------------- dates
_DATE = re.compile(
    r"(\d{4})(?:\s*[-/.年]\s*(\d{1,2})(?:\s*[-/.月]\s*(\d{1,2})\s*日?|\s*月)?)?\s*年?"
    # a time of day may follow, and is dropped
    r"(?:[T\s]+\d{1,2}[:：]\d{2}(?:[:：]\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})?)?"
)
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")


def iso_date(value: object) -> str | None:
    """`value` as an ISO 8601 date prefix ("2023", "2023-05", "2023-05-17"), or None.

    Accepts ISO forms with or without a time, "2023/5/17", "2023.05.17", "20230517",
    "2023年5月17日", "2023年5月", "2023年", full-width digits, and date objects. Anything
    else (a month 13, a 31 April, text around the date) is not a date: None, so nothing
    but a clean date reaches filters, citations and prompts.
    """
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip().translate(_FULL_WIDTH_DIGITS)
    m = _DATE.fullmatch(text) or _COMPACT_DATE.fullmatch(text)
    if not m:
        return None
    year, month, day = (int(g) if g else None for g in m.groups())
    if not 1000 <= year <= 2999 or (month is not None and not 1 <= month <= 12):
        return None
    if day is not None:
        try:
            return dt.date(year, month, day).isoformat()
        except ValueError:
            return None
    return f"{year:04d}-{month:02d}" if month else f"{year:04d}"


_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９－／．：", "0123456789-/.:")
