"""Bytes to text for Chinese files: BOMs, UTF-16 without a BOM, UTF-8, then GB18030 or Big5 by which reads like Chinese."""

from __future__ import annotations

import codecs
import functools
import re

from rag.errors import LoadError

_UNDECODABLE = (
    "无法识别文字编码（已尝试 UTF-8、UTF-16、GB18030、Big5）：请另存为 UTF-8 编码后再导入"
)
_BINARY = "文件内容是二进制数据，不是文本：请确认扩展名与文件类型一致"


# The most frequent simplified characters; their traditional forms are added at first
# use. Text decoded with the right codec is full of them, mojibake is not.
_COMMON_SIMPLIFIED = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同"
    "工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理"
    "起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义"
    "事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结"
    "解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设"
    "及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决"
    "西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济"
    "阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万"
    "每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记"
    "需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技"
    "备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候"
    "毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细"
    "引听该铁价严"
)


# Code point ranges that real Chinese prose rarely uses but mis-decoded bytes often
# land in: private use, kana, Hangul, CJK extension A and compatibility ideographs,
# squared/enclosed symbols, radicals, Greek/Cyrillic and box drawing, U+FFFD.
_RARE_RANGES = (
    (0x0370, 0x04FF),
    (0x1100, 0x11FF),
    (0x2500, 0x257F),
    (0x2E80, 0x2FDF),
    (0x3040, 0x30FF),
    (0x3100, 0x318F),
    (0x3200, 0x33FF),
    (0x3400, 0x4DBF),
    (0xAC00, 0xD7AF),
    (0xE000, 0xF8FF),
    (0xF900, 0xFAFF),
    (0xFF65, 0xFF9F),
    (0xFFFD, 0xFFFD),
)


@functools.lru_cache(maxsize=1)
def _common_chars() -> frozenset[str]:
    import opencc

    s2t = opencc.OpenCC("s2t").convert
    return frozenset(_COMMON_SIMPLIFIED) | frozenset("".join(s2t(c) for c in _COMMON_SIMPLIFIED))


def _is_rare(c: str) -> bool:
    o = ord(c)
    return o > 0xFFFF or any(lo <= o <= hi for lo, hi in _RARE_RANGES)


def _chinese_score(text: str) -> int:
    """How much `text` looks like real Chinese: common characters minus rare ones."""
    common = _common_chars()
    score = 0
    for c in text[:20_000]:  # a sample is enough, and keeps big files fast
        if c in common:
            score += 1
        elif ord(c) >= 0x0370 and _is_rare(c):
            score -= 2
    return score


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # C0 controls other than \t\n\v\f\r


def _control_count(text: str) -> int:
    return sum(1 for _ in _CONTROL.finditer(text))


def _looks_binary(text: str) -> bool:
    if "\x00" in text:
        return True
    ctrl = _control_count(text)
    return ctrl > max(1, 0.02 * len(text))


def _bom(data: bytes) -> str | None:
    # UTF-32 first: its LE mark starts with the UTF-16 LE mark.
    for mark, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(mark):
            return codec
    return None


def _text_like_share(text: str) -> float:
    """Share of ASCII, CJK ideographs, CJK and full-width punctuation in `text`."""
    sample = text[:20_000]
    good = sum(
        1
        for c in sample
        if " " <= c <= "~"
        or c in "\t\n\r"
        or "\u4e00" <= c <= "\u9fff"
        or "\u3000" <= c <= "\u303f"
        or "\uff00" <= c <= "\uffef"
        or "\u2010" <= c <= "\u206f"
    )
    return good / max(1, len(sample))


def _utf16_without_bom(data: bytes) -> tuple[str, str] | None:
    """UTF-16 text without a BOM, told apart from binary data that has NUL bytes.

    A decoding counts only if it is nearly all ASCII/CJK with no control characters
    and its hanzi read like Chinese; of LE and BE the one that reads better wins (the
    parity of the NULs alone misleads: U+4E00 一 puts its NUL on the other side).
    Bytes that are all ASCII pass only with NULs as dense as UTF-16 ASCII has them,
    so an ASCII file with a stray NUL is not read as a run of CJK characters.
    """
    if len(data) % 2 or (data.isascii() and data.count(0) < len(data) // 4):
        return None
    best: tuple[int, str, str] | None = None
    for codec in ("utf-16-le", "utf-16-be"):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        if (
            "\x00" in text
            or _control_count(text)
            or _text_like_share(text) < 0.9
            or not _reads_like_chinese(text)
        ):
            continue
        score = _chinese_score(text) + sum(1 for c in text[:20_000] if " " <= c <= "~")
        if best is None or score > best[0]:
            best = (score, text, codec)
    return (best[1], best[2]) if best else None


def decode_bytes(data: bytes, *, name: str = "<bytes>") -> tuple[str, str]:
    """Decode the bytes of a text file; return (text, encoding name in lower case).

    Order: BOM (UTF-8/16/32), UTF-16 without BOM when NUL bytes are present, strict
    UTF-8, then GB18030 or Big5, whichever reads more like Chinese. Raises
    LoadError(name, reason) for binary data or bytes no candidate decodes.

    >>> decode_bytes("崂山区召开大会".encode("gbk"))
    ('崂山区召开大会', 'gb18030')
    """
    enc = _bom(data)
    if enc:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            raise LoadError(name, _UNDECODABLE) from None
    elif b"\x00" in data:
        found = _utf16_without_bom(data)
        if not found:
            raise LoadError(name, _BINARY)
        text, enc = found
    else:
        try:
            text, enc = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, enc = _decode_chinese(data, name)
    if _looks_binary(text):
        raise LoadError(name, _BINARY)
    return text, enc


def _decode_chinese(data: bytes, name: str) -> tuple[str, str]:
    candidates: list[tuple[int, int, str, str]] = []
    # cp950 (Microsoft's Big5) only when strict Big5 fails: it maps a few more codes.
    for order, codec in enumerate(("gb18030", "big5", "cp950")):
        if codec == "cp950" and any(c[3] == "big5" for c in candidates):
            continue
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        candidates.append((_chinese_score(text), -order, text, codec))
    if not candidates:
        raise LoadError(name, _UNDECODABLE)
    _, _, text, codec = max(candidates)  # ties go to GB18030, the more common one
    if not _reads_like_chinese(text):
        raise LoadError(name, _UNDECODABLE)
    return text, codec


def _reads_like_chinese(text: str) -> bool:
    """False for long runs of hanzi that are almost never common characters.

    GB18030 accepts nearly any run of bytes >= 0x81, so random bytes (or another
    legacy encoding) "decode" to rare hanzi. In every 40-character window of real
    prose we sampled (CMRC, DRCD, news) at least 22% of the hanzi were common
    characters; in such garbage it is about 4%, under 11% in 300 random samples.
    """
    sample = text[:20_000]
    cjk = [c for c in sample if "\u4e00" <= c <= "\u9fff" or _is_rare(c)]
    if len(cjk) < 30:
        return True
    common = _common_chars()
    return sum(c in common for c in cjk) >= 0.1 * len(cjk)


def _norm_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")
