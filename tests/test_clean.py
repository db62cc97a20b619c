"""Tests for rag.ingest.clean on the real seed pages and on small synthetic articles."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.ingest.clean import Cleaned, Dropped, clean_text, explain

SEEDS = Path("/work/shared/seeds")

needs_seeds = pytest.mark.skipif(
    not SEEDS.is_dir(), reason=f"seed pages not available: {SEEDS} is missing"
)


def _seed(prefix: str) -> str:
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path.read_text(encoding="utf-8")


def _lines(text: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", text)


# Distinctive body sentences from the beginning, middle and end of each article,
# including the last body paragraph before the clutter.
BODY_SENTENCES = {
    "000": [
        "跳出威海,答好精致城市建设“必答题”",
        "8月27日,全域精致城市建设专题培训班课程结束。",
        "“教学课堂”搬到了千公里之外,类似的专题培训班已是第四期。",
        "为避免走入干部教育培训单向灌输、单调枯燥的“老胡同”",
        "眼下,一份关于城市更新的实施意见正在编制,其中涉及到的理念、措施等,很多都来自深圳之行。",
        "不断开创“精致城市·幸福威海”建设新局面。 (Hi威海客户端记者 杨彩明/文 资料图)",
    ],
    "001": [
        "权威发布丨精致城市论坛6月12日举办",
        "威海新闻网讯 5月30日,市政府新闻办举行精致城市论坛新闻发布会",
        "此次精致城市论坛由省住房城乡建设厅共同主办,对论坛的定位、促进全省城市建设工作有哪些考虑?",
        "★精当规划,以系统思维搭建精致城市“四梁八柱”",
        "从威海的角度看,与联合国人居署的渊源非常深厚。",
        "促进联合国“2030年可持续发展议程”和《新城市议程》的落实。(Hi威海客户端记者 董倩萍/文 毕钰晶/图 张博然/设计)",
    ],
    "002": [
        "2月7日下午,嶗山區(qū)召開全區(qū)城市更新和城市建設2023年度動員大會。",
        "青島市政協(xié)副主席、嶗山區(qū)委書記張元升主持會議并講話",
        "四是系統(tǒng)觀念要再強化,用城市更新建設為全區(qū)高質量發(fā)展賦能助力。",
        "全力鞏固好來之不易的城市更新建設成果。",
    ],
    "003": [
        "XX区党政代表团赴浙江省杭州市学习考察的情况汇报",
        "尊敬的蔡奇市长、各位领导",
        "大家上午好!欢迎各位领导到XX调研指导工作。",
        "一、杭州学习的总体感受和体会",
        "主要有以下几点值得学习借鉴",
        "注重建筑和景观的融合具有国际一流的设计水平设计单位为浙江省城乡规划设计研究院和德国HPP司、伍兹贝格亚洲有限司。",
    ],
    "004": [
        "中原区党政领导干部综合素质提升研修班在浙江大学开班 学习先进理念 打造中原区现代化美丽城区",
        "在开班仪式上,魏建民表示:“要珍惜学习机遇,提升政治站位。",
        "本报讯 在中原区深入开展“不忘初心、牢记使命”主题教育",
        "须水辖区是全市仅有的两个轨道",
        "好人文化是在历史名人和时代新人积淀上做文章,紧扣“中原好人”这一主题,在城市有机更新中渗透好人文化。",
    ],
}

# (seed, text that must disappear, reason it must be dropped with). Every original line
# containing the text must be in `dropped`.
CLUTTER = [
    ("000", "鲁ICP备09062847号-1", "copyright/ICP"),
    ("000", "版权所有: 齐鲁网 All Rights Reserved", "copyright/ICP"),
    ("000", "网友评论", "comment box"),
    ("000", "莱荣高铁文登南站主体封顶", "related-news block"),
    ("000", "[详细]", "related-news block"),
    ("000", "齐鲁网 2022-08-27", "related-news block"),
    ("000", "想爆料?请登录《阳光连线》", "news-tip line"),
    ("000", "技术支持:山东广电信通网络运营有限公司", "copyright/ICP"),
    ("001", "首页 > 威海要闻", "navigation"),
    ("002", "責任編輯:崔現(xiàn)香", "editor line"),
    ("002", "請輸入驗證碼", "captcha"),
    ("003", "¥0.01", "price list"),
    ("003", "赏赞", "share/tip widget"),
    ("003", "阅读全文", "read-more teaser"),
    ("003", "相关内容", "related-news list"),
    ("003", "热门推荐", "related-news list"),
    ("003", "联系客服", "contact/QR code"),
    ("003", "二维码", "contact/QR code"),
    ("003", "微信扫一扫在手机阅读、分享本文", "share/tip widget"),
    ("003", "链接地址:http://www.bbxzwk.vip", "page link/metadata"),
]

# Line openings of clutter lines that are over 60 characters and end like a sentence.
_LONG_CLUTTER = {"000": ("想爆料?",)}

_SENTENCE_FINAL = ("。", "！", "？", "!", "?", "”", "」")


@pytest.fixture(scope="module")
def cleaned() -> dict[str, tuple[str, Cleaned]]:
    out = {}
    for prefix in BODY_SENTENCES:
        raw = _seed(prefix)
        out[prefix] = (raw, clean_text(raw))
    return out


@needs_seeds
@pytest.mark.parametrize("prefix", sorted(BODY_SENTENCES))
def test_body_sentences_survive(cleaned, prefix):
    raw, result = cleaned[prefix]
    for sentence in BODY_SENTENCES[prefix]:
        assert sentence in raw, f"test data: {sentence!r} is not in seed {prefix}"
        assert sentence in result.text, f"seed {prefix} lost body text {sentence!r}"


@needs_seeds
@pytest.mark.parametrize("prefix", ["000", "001", "003"])
def test_every_long_sentence_line_survives(cleaned, prefix):
    raw, result = cleaned[prefix]
    kept = set(_lines(result.text))
    clutter = _LONG_CLUTTER.get(prefix, ())
    paragraphs = [
        line
        for line in _lines(raw)
        if len(line.strip()) > 60
        and line.strip().endswith(_SENTENCE_FINAL)
        and not any(line.strip().startswith(c) for c in clutter)
    ]
    assert len(paragraphs) >= 5
    missing = [p for p in paragraphs if p not in kept]
    assert missing == []


@needs_seeds
@pytest.mark.parametrize(("prefix", "needle", "reason"), CLUTTER)
def test_clutter_is_dropped_with_reason(cleaned, prefix, needle, reason):
    raw, result = cleaned[prefix]
    hits = [(n, line) for n, line in enumerate(_lines(raw), 1) if needle in line]
    assert hits, f"test data: {needle!r} is not in seed {prefix}"
    assert needle not in result.text
    dropped = {d.line_no: d for d in result.dropped}
    for line_no, line in hits:
        assert line_no in dropped, f"L{line_no} {line!r} was not reported as dropped"
        assert dropped[line_no].text == line
        assert dropped[line_no].reason == reason


@needs_seeds
def test_seed_000_drops_everything_from_the_news_tip_line_on(cleaned):
    raw, result = cleaned["000"]
    lines = _lines(raw)
    start = next(n for n, line in enumerate(lines, 1) if line.startswith("想爆料"))
    expected = {1} | {n for n, line in enumerate(lines, 1) if n >= start and line.strip()}
    assert {d.line_no for d in result.dropped} == expected
    assert result.kept_lines == 13


@needs_seeds
def test_seed_003_drops_the_page_tail_and_the_service_banner(cleaned):
    raw, result = cleaned["003"]
    lines = _lines(raw)
    start = lines.index("阅读全文") + 1
    expected = {4} | {n for n, line in enumerate(lines, 1) if n >= start and line.strip()}
    assert {d.line_no for d in result.dropped} == expected


@needs_seeds
def test_traditional_seed_keeps_all_body_paragraphs(cleaned):
    raw, result = cleaned["002"]
    lines = _lines(raw)
    body = [line for line in lines if len(line) > 30 and line.endswith("。")]
    assert len(body) == 11
    kept = _lines(result.text)
    assert kept[: len(body)] == body
    assert {d.line_no for d in result.dropped} == {13, 14}


@needs_seeds
def test_clean_seeds_are_left_alone(cleaned):
    # 001 only has a breadcrumb; 004 has no clutter at all.
    assert [d.line_no for d in cleaned["001"][1].dropped] == [1]
    raw, result = cleaned["004"]
    assert result.dropped == ()
    assert result.text == _collapse_blank_runs(raw)


@needs_seeds
@pytest.mark.parametrize("prefix", sorted(BODY_SENTENCES))
def test_kept_lines_are_verbatim(cleaned, prefix):
    raw, result = cleaned[prefix]
    original = set(_lines(raw))
    for line in _lines(result.text):
        assert line == "" or line in original
    assert result.kept_lines == sum(1 for line in _lines(result.text) if line)
    assert "\n\n\n" not in result.text
    assert result.text == result.text.strip("\n")


@needs_seeds
@pytest.mark.parametrize("prefix", sorted(BODY_SENTENCES))
def test_explain_lists_every_dropped_line(cleaned, prefix):
    _, result = cleaned[prefix]
    report = explain(result)
    for d in result.dropped:
        assert f"L{d.line_no} [{d.reason}]" in report
    assert report.splitlines()[-1].startswith(
        f"kept {result.kept_lines} lines, dropped {len(result.dropped)} lines"
    )


def _collapse_blank_runs(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


BODY_A = "市政府新闻办5月30日举行新闻发布会,介绍精致城市论坛的筹备情况和主要活动安排。"
BODY_B = "论坛将发布精致城市可持续发展指数等一批成果,并公布一批社区治理研究课题,欢迎市民参与。"
BODY_C = "据介绍,今年全市将改造老旧小区一百余个,加装电梯两百部,新建口袋公园五十处。"


def test_body_after_related_link_marker_is_kept():
    text = f"论坛新闻\n\n{BODY_A}\n\n【相关链接】\n\n{BODY_B}\n\n{BODY_C}"
    result = clean_text(text)
    assert BODY_B in result.text
    assert BODY_C in result.text
    assert all(d.text != BODY_B for d in result.dropped)


def test_body_after_a_stray_marker_is_kept_and_the_marker_dropped():
    text = f"{BODY_A}\n分享:\n{BODY_B}\n版权所有: 某某网\n{BODY_C}"
    result = clean_text(text)
    assert result.text == f"{BODY_A}\n{BODY_B}\n{BODY_C}"
    assert [(d.line_no, d.reason) for d in result.dropped] == [
        (2, "share/tip widget"),
        (4, "copyright/ICP"),
    ]


def test_short_lines_after_an_end_marker_are_the_tail():
    text = f"{BODY_A}\n{BODY_B}\n网友评论\n张三:写得好\n李四 2022-08-27\n顶一下"
    result = clean_text(text)
    assert result.text == f"{BODY_A}\n{BODY_B}"
    assert [(d.line_no, d.reason) for d in result.dropped] == [
        (3, "comment box"),
        (4, "tail after end-of-article marker"),
        (5, "tail after end-of-article marker"),
        (6, "tail after end-of-article marker"),
    ]


def test_short_headings_in_the_body_are_kept():
    text = f"一、总体情况\n{BODY_A}\n★精当规划,搭建四梁八柱\n{BODY_B}\n张振山:\n{BODY_C}"
    assert clean_text(text).text == text


def test_text_without_clutter_comes_back_unchanged():
    text = f"\n\n标题\n\n\n\n{BODY_A}\n  {BODY_B}\n\n\n{BODY_C}\n\n"
    result = clean_text(text)
    assert result.dropped == ()
    assert result.text == f"标题\n\n{BODY_A}\n  {BODY_B}\n\n{BODY_C}"
    assert result.kept_lines == 4


def test_empty_input_gives_empty_output():
    for text in ("", "\n\n", "   \n"):
        result = clean_text(text)
        assert result == Cleaned(text="", dropped=(), kept_lines=0)
    assert explain(clean_text("")) == "kept 0 lines, dropped 0 lines"


def test_related_news_item_at_the_end_is_dropped_but_a_repeated_title_keeps_one_copy():
    text = (
        f"城市更新动员大会召开\n城市更新动员大会召开\n{BODY_A}\n"
        "老旧小区改造开工\n老旧小区改造开工\n"
        "日前,全市老旧小区改造项目集中开工。[详细]\n齐鲁网 2022-08-27"
    )
    result = clean_text(text)
    assert result.text == f"城市更新动员大会召开\n{BODY_A}"
    assert [(d.line_no, d.reason) for d in result.dropped] == [
        (2, "duplicate line"),
        (4, "related-news block"),
        (5, "related-news block"),
        (6, "related-news block"),
        (7, "related-news block"),
    ]


def test_line_endings_are_not_part_of_kept_lines():
    result = clean_text(f"{BODY_A}\r\n\r\n{BODY_B}\r\n鲁ICP备09062847号-1\r\n")
    assert result.text == f"{BODY_A}\n\n{BODY_B}"
    assert result.dropped == (Dropped(4, "鲁ICP备09062847号-1", "copyright/ICP"),)


def test_explain_format():
    result = clean_text(f"全部\n{BODY_A}\n版权所有: 齐鲁网 All Rights Reserved")
    assert explain(result) == (
        "  - L1 [navigation] 全部\n"
        "  - L3 [copyright/ICP] 版权所有: 齐鲁网 All Rights Reserved\n"
        "kept 1 lines, dropped 2 lines (navigation: 1, copyright/ICP: 1)"
    )


def test_body_glued_to_a_footer_is_kept_whole():
    # The line cannot be split, and it carries body sentences: keep it.
    line = f"{BODY_A} 主办单位：国务院办公厅 版权所有：中国政府网 京ICP备05070218号"
    assert clean_text(f"{BODY_B}\n{line}").text == f"{BODY_B}\n{line}"


def test_a_one_line_article_that_mentions_clutter_words_is_kept():
    article = (
        "工信部发布通知,要求移动应用开展ICP备案工作。有网友在微博爆料称,部分应用已经完成备案,"
        "新闻热线接到不少咨询,版权所有者也关心备案流程,预计年底前全部完成。"
    )
    result = clean_text(article)
    assert result.text == article
    assert result.dropped == ()
