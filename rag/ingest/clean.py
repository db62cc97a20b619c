"""Remove web-page clutter (navigation, related news, comment boxes, copyright lines,
share/tip widgets) around an article body, line by line and never rewriting a line.

Scraped news pages carry text that would pollute retrieval: a list of other headlines
matches many questions, and a copyright footer appears in every page of a site. The
cleaner decides per line, keep or drop, so every kept line is byte-for-byte the
original line (citations quote it) and every dropped line is reported with a reason
(`rag ingest --explain FILE`).

Three kinds of evidence, applied in order, the first reason found wins:

1. line rules: patterns for boilerplate lines (ICP numbers, "版权所有", "网友评论",
   price lists, "阅读全文", ...), matched on the normalised line (simplified,
   half-width), each capped in length, most skipped on lines that end with "。", and
   skipped when whole sentences come before the match, so a body sentence that
   mentions the same words is kept;
2. block rules: related-news items (a headline repeated twice, a teaser ending in
   "[详细]", a "source date" line) and immediately repeated short lines;
3. the tail: after the first clutter line that follows the last body-like paragraph,
   everything is dropped; since nothing after it looks like prose, a stray marker
   inside the article never costs a paragraph.

When unsure, keep: short lines in the middle of the body (section headings, speaker
names, slogans) match none of the rules and survive.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from dataclasses import dataclass

from rag.textnorm import norm

__all__ = ["Cleaned", "Dropped", "clean_text", "explain", "relocate"]


@dataclass(frozen=True)
class Dropped:
    """One removed line: where it was, what it said, and why it went."""

    line_no: int  # 1-based line number in the input
    text: str  # the original line, unchanged
    reason: str  # short English reason, e.g. "copyright/ICP"


@dataclass(frozen=True)
class Cleaned:
    """The article body: kept lines verbatim, blank-line runs collapsed to one blank line."""

    text: str
    dropped: tuple[Dropped, ...]
    kept_lines: int  # non-blank lines kept
    kept_from: tuple[int, ...] = ()  # each line of `text`: its 0-based line in the input


# Reasons, named once so tests and the report agree on spelling.
NAVIGATION = "navigation"
RELATED_BLOCK = "related-news block"
RELATED_LIST = "related-news list"
COPYRIGHT = "copyright/ICP"
COMMENT_BOX = "comment box"
SHARE_TIP = "share/tip widget"
PRICE_LIST = "price list"
READ_MORE = "read-more teaser"
LOGIN = "login prompt"
CAPTCHA = "captcha"
CONTACT = "contact/QR code"
EDITOR = "editor line"
NEWS_TIP = "news-tip line"
LINK_META = "page link/metadata"
VIEW_COUNTER = "view counter"
DUPLICATE = "duplicate line"
TAIL = "tail after end-of-article marker"

# Lines dropped for these reasons do not mark the end of the article: navigation sits
# at the top, and a repeated line or a counter can sit anywhere.
_NOT_TAIL_MARKERS = frozenset({NAVIGATION, DUPLICATE, VIEW_COUNTER})

# Characters that decorate list items and are ignored when matching a rule.
_BULLETS = "•·●◆◇■□▪▸►>→*-—–+ \t"

_SENTENCE_STOP = re.compile(r"[。！？!?]")
_SENTENCE_END = re.compile(r"[。！？!?…；;][”\"」』’')）\]】]*$")


@dataclass(frozen=True)
class _Rule:
    reason: str
    pattern: re.Pattern[str]
    max_len: int  # the rule only fires on lines at most this long (normalised)
    on_prose: bool  # may fire on a line that ends with a full stop


def _rule(reason: str, pattern: str, max_len: int = 40, on_prose: bool = False) -> _Rule:
    return _Rule(reason, re.compile(pattern), max_len, on_prose)


# Patterns run on the normalised line: simplified characters, half-width ASCII, lower
# case, runs of white space as one space, leading list bullets removed. Every rule has
# a length cap, because a long line is more likely a paragraph (or, in a one-line
# article, the whole article) that merely mentions the same words.
_RULES: tuple[_Rule, ...] = (
    # navigation
    _rule(NAVIGATION, r"^(全部|返回|返回首页|首页|上一篇|下一篇|上一页|下一页)$"),
    _rule(NAVIGATION, r"^(首页|主页|网站首页)\s*[>›»/|]", 60),
    _rule(NAVIGATION, r"^(当前位置|您的位置|你的位置|您现在的位置|所在位置)\s*[:：]", 60),
    _rule(NAVIGATION, r"^(上一篇|下一篇)\s*[:：]", 80),
    # copyright, licences, site footer
    _rule(COPYRIGHT, r"icp\s*[备证]?\s*(字第?)?\s*\d{6,}|公网安备|all rights reserved", 200),
    _rule(COPYRIGHT, r"版权所有|版权声明|copyright|©|\(c\)\s*\d{4}", 80),
    _rule(COPYRIGHT, r"许可证\s*[:：]?\s*[\d-]{5,}", 120),
    _rule(COPYRIGHT, r"^(通讯地址|联系地址|地址|邮编|邮政编码)\s*[:：]|邮编\s*[:：]?\s*\d{6}", 80),
    _rule(COPYRIGHT, r"^(技术支持|主办单位|承办单位|主办|承办|协办|网站维护)\s*[:：]", 60),
    _rule(COPYRIGHT, r"^(未经|本网).{0,20}(授权|许可).{0,20}(转载|复制|使用)", 120),
    # news tips and advertising contacts
    _rule(NEWS_TIP, r"^想爆料", 300, on_prose=True),
    _rule(NEWS_TIP, r"爆料.{0,30}(热线|请登录|请拨打|邮箱)", 200),
    _rule(NEWS_TIP, r"新闻线索.{0,20}(热线|电话)|广告热线|新闻热线", 200),
    # comment boxes
    _rule(COMMENT_BOX, r"^(网友评论|我来说两句|发表评论|查看评论|全部评论|最新评论|热门评论)"),
    _rule(COMMENT_BOX, r"我来说两句|评论仅供网友表达|已有\s*\d+\s*(人|条)\s*(参与|评论)", 80),
    _rule(COMMENT_BOX, r"^评论\s*(\(\d+\))?$|^\d+\s*条评论$"),
    # share and tip widgets
    _rule(SHARE_TIP, r"^(分享|分享到|分享至|转发|收藏|点赞|举报|打印|关闭窗口|关闭)\s*[:：]?$"),
    _rule(SHARE_TIP, r"^(分享到|分享至)"),
    _rule(SHARE_TIP, r"扫一扫|赏赞|打赏|请赞赏|赞赏(一下|鼓励|支持|作者)|^(点个赞|在看|赞)$", 30),
    _rule(SHARE_TIP, r"^(微信|微博|qq空间|qq|朋友圈|豆瓣|人人网)$", 10),
    _rule(PRICE_LIST, r"^[¥￥$]\s*\d+(\.\d+)?\s*(元)?$", 20),
    # read-more teasers and login walls
    _rule(READ_MORE, r"^(阅读全文|展开全文|查看全文|点击查看全文|阅读原文|查看原文|全文阅读)"),
    _rule(READ_MORE, r"^(查看更多|更多|加载更多|点击加载更多|更多>>)\s*[>》»]*$"),
    _rule(READ_MORE, r"想阅读完全部|阅读完整内容|继续阅读"),
    _rule(LOGIN, r"(请先?|需要先?|您需要先?)(登陆|登录|注册)|^(登录|登陆|注册|退出)$"),
    _rule(CAPTCHA, r"^(请)?(输入|填写)?验证码|看不清.{0,6}换一张"),
    _rule(CONTACT, r"^(联系客服|联系我们|关于我们|客服热线|在线客服|意见反馈|网站地图|免责声明)"),
    _rule(CONTACT, r"二维码|订阅号|公众号|服务号", 30),
    # editors and page metadata
    _rule(EDITOR, r"^(责任编辑|责编)\s*[:：\s]|^(审核|审校|校对|监制|值班编辑|编审|终审)\s*[:：]"),
    _rule(EDITOR, r"^编辑\s*[:：]", 30),
    _rule(
        LINK_META,
        r"^(链接地址|本文链接|原文链接|本文地址|原文地址|文章地址|网址|本文标题|文章标题)\s*[:：]",
        200,
    ),
    _rule(LINK_META, r"^关于本文$|^(https?://|www\.)\S+$", 200),
    # related-news list headers
    _rule(
        RELATED_LIST,
        r"^【?(相关内容|相关新闻|相关阅读|相关文章|相关推荐|热门推荐|热门文章|热点推荐|本周热门|"
        r"本月热门|今日热门|热门排行|推荐阅读|延伸阅读|猜你喜欢|精彩推荐|为你推荐|最新文章|"
        r"最新资讯|热点新闻|排行榜)】?\s*[:：]?$",
        20,
    ),
    # a lone number: a view or like counter
    _rule(
        VIEW_COUNTER,
        r"^\d{1,9}$|^(阅读|浏览|点击|阅读量|浏览量|点击量|浏览次数)\s*[:：]?\s*\d+",
        20,
    ),
)

# A related-news teaser: a one-line summary that links to the full story.
_TEASER = re.compile(r"(\[|【)(详细|详情|全文|更多|阅读全文)(\]|】)$|(详细|详情|全文)\s*(>>|»|>)$")
# "source date" under a related-news teaser, e.g. "齐鲁网 2022-08-27".
_SOURCE_DATE = re.compile(
    r"^\S.{0,24}?\s+\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}日?(\s+\d{1,2}:\d{2}(:\d{2})?)?$"
)
# A top-of-page menu: four or more short items separated by spaces or bars. An item
# cannot contain a separator: with `\S{1,5}` items ("a//a//...") the match backtracked
# exponentially, and one 60-character line took hours.
_MENU = re.compile(r"^(?:[^\s|｜/]{1,5}[\s|｜/]+){3,}[^\s|｜/]{1,5}$")
_PINYIN_NOTE = re.compile(r"\([a-zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜü]{1,7}\)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _key(line: str) -> str:
    """The normalised form a rule is matched against (pinyin notes and bullets removed)."""
    return _PINYIN_NOTE.sub("", norm(line)).lstrip(_BULLETS)


def _body_like(key: str) -> bool:
    """Does the line read like a paragraph of prose rather than a label or a headline?"""
    n = len(key)
    if n >= 25 and _SENTENCE_END.search(key):
        return True
    return n >= 50 and (key.count("。") >= 1 or key.count(",") + key.count("，") >= 2)


def _line_rule(key: str) -> str | None:
    # A sentence closed by a full stop is prose, not a widget label: only the few rules
    # marked on_prose may drop it.
    prose = len(key) >= 15 and key.endswith("。")
    for rule in _RULES:
        if len(key) > rule.max_len or (prose and not rule.on_prose):
            continue
        m = rule.pattern.search(key)
        # A scraper may glue the last body sentences and the footer into one line; the
        # line cannot be split (kept lines are verbatim), so keep it whole.
        if m and not (m.start() >= 15 and _SENTENCE_STOP.search(key, 0, m.start())):
            return rule.reason
    return None


# a row as rag.ingest.tables writes it: "表2｜区县：崂山区｜2023年计划投资：156亿元"
_TABLE_ROW = re.compile(r"｜[^｜\n]{1,80}：[^｜\n]")


def clean_text(text: str) -> Cleaned:
    """Drop clutter lines from a scraped article and keep every body line verbatim.

    >>> c = clean_text("首页 > 要闻\\n\\n正文第一段。\\n版权所有: 某网")
    >>> c.text, [d.reason for d in c.dropped]
    ('正文第一段。', ['navigation', 'copyright/ICP'])
    """
    lines = _LINE_BREAK.split(text)
    keys = [_key(line) for line in lines]
    reasons: list[str | None] = [None] * len(lines)
    nonblank = [i for i, k in enumerate(keys) if k]
    body = [_body_like(keys[i]) for i in range(len(lines))]
    first_body = next((i for i in nonblank if body[i]), None)

    for i in nonblank:
        reasons[i] = _line_rule(keys[i])
        if reasons[i] is None and _TEASER.search(keys[i]):
            reasons[i] = RELATED_BLOCK
        if reasons[i] is None and (first_body is None or i < first_body):
            if _MENU.match(keys[i]):
                reasons[i] = NAVIGATION

    _mark_related_blocks(keys, nonblank, reasons, body)
    _mark_tail(nonblank, reasons, body)
    for i in nonblank:  # a table row is data, whatever its cells look like
        if _TABLE_ROW.search(lines[i]):
            reasons[i] = None

    kept: list[str] = []
    kept_from: list[int] = []
    dropped: list[Dropped] = []
    for i, line in enumerate(lines):
        reason = reasons[i]
        if reason is not None:
            dropped.append(Dropped(i + 1, line, reason))
        elif keys[i] or line.strip():
            kept.append(line)
            kept_from.append(i)
        elif kept and kept[-1] != "":
            kept.append("")
            kept_from.append(i)
    while kept and kept[-1] == "":
        kept.pop()
        kept_from.pop()
    kept_count = sum(1 for line in kept if line)
    return Cleaned("\n".join(kept), tuple(dropped), kept_count, tuple(kept_from))


def relocate(original: str, cleaned: Cleaned, locations: list[list]) -> list[list]:
    """Locations recorded on `original` (`[offset, label, ...]`, a loader's) moved to
    where their lines are in `cleaned.text`: a location whose line was dropped starts at
    the next kept line; one past the last kept line is gone.

    >>> c = clean_text("首页 > 要闻\\n## 一、总体要求\\n正文。")
    >>> relocate("首页 > 要闻\\n## 一、总体要求\\n正文。", c, [[0, ""], [8, "一、总体要求"]])
    [[0, '一、总体要求']]
    """
    starts = [0] + [m.end() for m in _LINE_BREAK.finditer(original)]
    new_starts, pos = [], 0
    for line in cleaned.text.split("\n") if cleaned.kept_from else []:
        new_starts.append(pos)
        pos += len(line) + 1
    out: list[list] = []
    for loc in locations:
        line = bisect.bisect_right(starts, loc[0]) - 1
        k = bisect.bisect_left(cleaned.kept_from, line)
        if k >= len(new_starts):
            continue
        moved = [new_starts[k], *loc[1:]]
        if out and out[-1][0] == moved[0]:
            out[-1] = moved  # the later one is where the kept line is
        else:
            out.append(moved)
    return out


def _mark_related_blocks(
    keys: list[str], nonblank: list[int], reasons: list[str | None], body: list[bool]
) -> None:
    """Related-news items: a headline shown twice, then an optional teaser and a
    "source date" line. A short line repeated with nothing between is a duplicate."""
    pos = 0
    while pos < len(nonblank) - 1:
        i, j = nonblank[pos], nonblank[pos + 1]
        if keys[i] != keys[j] or body[i] or len(keys[i]) > 80:
            pos += 1
            continue
        after = nonblank[pos + 2 : pos + 4]
        in_block = any(reasons[k] == RELATED_BLOCK or _SOURCE_DATE.match(keys[k]) for k in after)
        if in_block:
            for k in (i, j):
                reasons[k] = reasons[k] or RELATED_BLOCK
        else:
            # The first copy may be the article's own title: keep it, drop the echo.
            reasons[j] = reasons[j] or DUPLICATE
        pos += 2

    # A "source date" line directly under a related-news teaser or headline.
    for prev, cur in zip(nonblank, nonblank[1:], strict=False):
        if reasons[cur] is None and reasons[prev] == RELATED_BLOCK:
            if _SOURCE_DATE.match(keys[cur]):
                reasons[cur] = RELATED_BLOCK


def _mark_tail(nonblank: list[int], reasons: list[str | None], body: list[bool]) -> None:
    """Drop the page tail: everything after the first clutter marker that follows the
    last kept body-like line, so no paragraph of prose is ever part of the tail."""
    body_kept = [i for i in nonblank if body[i] and reasons[i] is None]
    if not body_kept:
        return
    last_body = body_kept[-1]
    for i in nonblank:
        if i > last_body and reasons[i] is not None and reasons[i] not in _NOT_TAIL_MARKERS:
            for k in nonblank:
                if k > i and reasons[k] is None:
                    reasons[k] = TAIL
            return


def explain(cleaned: Cleaned) -> str:
    """A report for `rag ingest --explain FILE`: one line per dropped line, then counts.

    Example line: ``  - L96 [copyright/ICP] 版权所有: 齐鲁网 All Rights Reserved``
    """
    out = [f"  - L{d.line_no} [{d.reason}] {d.text.strip()}" for d in cleaned.dropped]
    by_reason = Counter(d.reason for d in cleaned.dropped)
    summary = ", ".join(f"{reason}: {n}" for reason, n in by_reason.most_common())
    out.append(
        f"kept {cleaned.kept_lines} lines, dropped {len(cleaned.dropped)} lines"
        + (f" ({summary})" if summary else "")
    )
    return "\n".join(out)
