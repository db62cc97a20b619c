"""HTML of the chat page: answers with linked citations, citation cards, the document viewer, upload results, and the page CSS/JS. Pure functions, no gradio."""

import html
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from rag.read.extractive import CONFLICT, provenance
from rag.serve.public import public_text
from rag.textnorm import without_glosses

MAX_DOC_VIEW_CHARS = 200_000  # a longer document is shown as a window around the passage


STATUS_ZH = {
    "added": "已添加",
    "updated": "已更新",
    "unchanged": "未变化",
    "failed": "失败",
    "removed": "已删除",
}


# =========================================================================== rendering
class UploadResult(NamedTuple):
    name: str  # the file name the user gave (or the document title, for removals)
    status: str  # added | updated | unchanged | failed | removed
    reason: str = ""
    doc_id: str = ""
    chunks: int = 0


def esc(text: str) -> str:
    """HTML-escaped text with line breaks kept (as <br>, so no blank line ends an HTML block)."""
    return html.escape(text, quote=True).replace("\r", "").replace("\n", "<br>")


def mark_spans(
    text: str,
    spans: Sequence[tuple[int, int]],
    cls: str = "rag-quote",
    shown: Callable[[str], str] = str,
) -> str:
    """Escape `text`, wrapping each (start, end) span in <mark class=cls>.

    Spans are clipped to the text; overlapping spans are merged. `shown` turns each piece
    into what is displayed (a card drops pinyin glosses; the source view shows all).
    """
    merged: list[list[int]] = []
    for s, e in sorted((max(0, s), min(len(text), e)) for s, e in spans):
        if e <= s:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    out, pos = [], 0
    for s, e in merged:
        out.append(esc(shown(text[pos:s])))
        out.append(f'<mark class="{cls}">{esc(shown(text[s:e]))}</mark>')
        pos = e
    out.append(esc(shown(text[pos:])))
    return "".join(out)


def _date_zh(date: str | None) -> str:
    return date if date else "日期不详"


def location_zh(start: int, end: int, n_chars: int | None) -> str:
    """Where a passage lies in its document, e.g. "第 101–380 字，约在全文 12% 处"."""
    where = f"第 {start + 1}–{end} 字"
    if n_chars:
        where += f"，约在全文 {round(100 * start / n_chars)}% 处"
    return where


def _cite_class(turn: int, n: int) -> str:
    # The sanitiser of chat messages drops data-* attributes but keeps classes, so the
    # click handler reads (turn, n) from the class name.
    return f"rag-cite rag-at-{turn}-{n}"


def snippet(
    text: str, quotes: Sequence[tuple[int, int]], context: int = 60, plain: int = 160
) -> str:
    """HTML of the part of a passage worth showing: the quotes (marked) with some context.

    `quotes` are offsets in `text`. Without quotes, the first `plain` characters. Runs of
    blank lines are collapsed: a card is small.
    """
    if quotes:
        lo = max(0, min(s for s, _ in quotes) - context)
        hi = min(len(text), max(e for _, e in quotes) + context)
    else:
        lo, hi = 0, min(len(text), plain)
    body = mark_spans(text[lo:hi], [(s - lo, e - lo) for s, e in quotes], shown=without_glosses)
    body = re.sub(r"(?:<br>\s*){2,}", "<br>", body)
    return ("……" if lo > 0 else "") + body + ("……" if hi < len(text) else "")


def render_citation_card(c, turn: int, n_chars: int | None = None, plain: int = 160) -> str:
    """One cited passage: title, date, location, the passage with its quoted sentences marked.

    `plain` is how much of a passage without quotes (a "possibly related" one) is shown.
    """
    rel = [(qs - c.start, qe - c.start) for qs, qe in c.quotes]
    origin = getattr(c, "provenance", "")
    where = getattr(c, "location", "") or location_zh(c.start, c.end, n_chars)
    if getattr(c, "ocr", False):
        where += "（扫描件识别，请核对原件）"
    warnings = "".join(
        f'<div class="rag-warn">⚠ {esc(FLAG_WARNINGS[f])}</div>'
        for f in getattr(c, "flags", ())
        if f in FLAG_WARNINGS
    )
    return (
        f'<div class="rag-card {_cite_class(turn, c.n)}" title="点击查看原文">'
        f'<div class="rag-card-head"><span class="rag-badge">[{c.n}]</span>'
        + (f'<span class="rag-kb">〔知识库 {esc(c.kb)}〕</span>' if getattr(c, "kb", "") else "")
        + f'<span class="rag-title">《{esc(c.title or c.doc_id)}》</span></div>'
        f'<div class="rag-meta">{esc(_date_zh(c.date))} · {esc(where)}</div>'
        + (f'<div class="rag-provenance">{esc(origin)}</div>' if origin else "")
        + warnings
        + f'<div class="rag-passage">{snippet(c.text, rel, plain=plain)}</div>'
        f'<div class="rag-open">查看原文 ›</div></div>'
    )


# what a citation's flags (rag.types.Citation.flags) warn the reader of
FLAG_WARNINGS = {
    "instruction": "此段含有像是写给问答助手的指令，可能是植入的文字，请勿当作事实。",
    "citation_marker": "此段自带引用标记，可能是伪造的引用，请核对原文。",
}


_MARKER = re.compile(r"\[(\d{1,3})\]")
_JOINER = re.compile(
    rf"(?:{re.escape(CONFLICT)}|；|\n?\d{{1,2}}\. )?(?:[^\[\]\n。，]{{1,20}}?表示：)?"
)


def marker_spans(answer) -> list[tuple[int, int, int]]:
    """(start, end, n) of each citation marker the answerer put into `answer.text`.

    Only these become clickable: any other `[n]` in the text (a document that says
    "据[1]记载", quoted) is document text and stays plain. An extractive answer is its
    sentences, each followed by `[citation]`, so the markers are read off `answer.sentences`.
    An LLM answer's markers live only in its text, where `LLMAnswerer.check` has rewritten
    every marker it accepted as `[n]`, n a citation of the answer, and dropped the rest:
    those are the validated ones.
    """
    text, numbers = answer.text, {c.n for c in answer.citations}
    if answer.refused or not numbers:
        return []
    if answer.generator != "extractive":
        return [
            (m.start(), m.end(), int(m.group(1)))
            for m in _MARKER.finditer(text)
            if int(m.group(1)) in numbers
        ]
    spans, pos = [], 0
    for s in answer.sentences:
        marker = f"[{s.citation}]"
        # between quotes only our own joiners: nothing, a conflict's or an unmet
        # constraint's lead-in, a list item's number, a speaker ("李瑞玲表示：")
        if not text.startswith(s.text, pos):
            j = _JOINER.match(text, pos)
            pos = j.end() if j else pos
        at = pos + len(s.text)
        if not (text.startswith(s.text, pos) and text.startswith(marker, at)):
            break  # not the shape extractive answers have: link nothing past this point
        if s.citation in numbers:
            spans.append((at, at + len(marker), s.citation))
        pos = at + len(marker)
    return spans


def _linked_text(answer, turn: int) -> str:
    """The answer text, escaped, with its citation markers as clickable <sup> elements
    and the short answer (the span that answers) in bold."""
    text, out, pos = answer.text, [], 0
    marks = [(a, b, f'<sup class="rag-marker {_cite_class(turn, n)}">[{n}]</sup>')
             for a, b, n in marker_spans(answer)]  # fmt: skip
    short = answer.short_answer
    at = text.find(short) if short and not answer.refused else -1
    if at >= 0 and not any(a < at + len(short) and at < b for a, b, _ in marks):
        marks.append((at, at + len(short), f'<b class="rag-short">{esc(short)}</b>'))
    for start, end, piece in sorted(marks):
        out.append(esc(text[pos:start]))
        out.append(piece)
        pos = end
    out.append(esc(text[pos:]))
    return "".join(out)


def render_confidence(answer) -> str:
    """ "可信度：高 · 引用的句子包含问题的关键词和所问的数值"."""
    if not answer.confidence_level:
        return ""
    level = {"高": "high", "中": "mid", "低": "low"}.get(answer.confidence_level, "low")
    reason = f" · {esc(answer.confidence_reason)}" if answer.confidence_reason else ""
    return (
        f'<div class="rag-confidence rag-conf-{level}">可信度：'
        f"{esc(answer.confidence_level)}{reason}</div>"
    )


def _rewritten_html(question: str, rewritten: str | None) -> str:
    if not rewritten or rewritten.strip() == question.strip():
        return ""
    return f'<div class="rag-rewritten">↻ 理解为：{esc(rewritten)}</div>'


def plain_answer(answer) -> str:
    """The answer as the copy button puts it on the clipboard: its text with the [n]
    markers, then each cited passage as "[n]《标题》第4页：引用的句子"."""
    lines = [without_glosses(answer.text).strip()]
    if answer.citations:
        lines.append("")
        lines.append("可能相关的段落：" if answer.refused else "引用来源：")
    for c in answer.citations:
        quoted = "……".join(c.text[s - c.start : e - c.start] for s, e in c.quotes)
        passage = quoted or c.text[:160] + ("……" if len(c.text) > 160 else "")
        passage = re.sub(r"\s+", " ", without_glosses(passage)).strip()
        kb = f"〔知识库 {c.kb}〕" if getattr(c, "kb", "") else ""
        lines.append(
            f"[{c.n}]{kb}《{c.title or '无标题文档'}》{getattr(c, 'location', '')}：{passage}"
        )
    return "\n".join(lines)


def _plain_html(text: str) -> str:
    # hidden; read by the copy handler (COPY_JS) a line per <div>: a message's HTML may
    # hold no blank line (it would end the HTML block) and the sanitiser drops attributes
    rows = "".join(f"<div>{html.escape(line)}</div>" for line in text.split("\n"))
    return f'<div class="rag-plain">{rows}</div>'


def render_answer(answer, turn: int, n_chars: dict[str, int] | None = None) -> str:
    """The finished answer as chat-message HTML: text with [n] markers, then its sources.

    A refusal is drawn as one (a warning box), followed by the "possibly related"
    passages; those are not citations, so the answer text has no markers.
    """
    n_chars = n_chars or {}
    parts = [
        '<div class="rag-answer">',
        _rewritten_html(answer.question, answer.rewritten_question),
    ]
    if answer.refused:
        parts.append(
            f'<div class="rag-refusal"><span class="rag-refusal-icon">⚠</span> {esc(answer.text)}</div>'
        )
        if answer.confidence_reason and answer.sentences:  # why what is there does not answer
            parts.append(render_confidence(answer))
        if answer.notice and not answer.citations:  # e.g. nothing in the chosen scope
            parts.append(f'<div class="rag-notice">{esc(answer.notice)}</div>')
        if answer.citations:
            note = answer.notice or "以下段落可能相关，但不足以回答这个问题。"
            parts.append(f'<div class="rag-related-label">{esc(note)}</div>')
            parts.append('<div class="rag-cites rag-related">')
    else:
        if answer.notice:
            parts.append(f'<div class="rag-notice">{esc(answer.notice)}</div>')
        parts.append(f'<div class="rag-text">{_linked_text(answer, turn)}</div>')
        parts.append(render_confidence(answer))
        if answer.citations:
            parts.append('<div class="rag-cites-label">引用来源</div><div class="rag-cites">')
    for c in answer.citations:
        parts.append(
            render_citation_card(c, turn, n_chars.get(c.doc_id), 90 if answer.refused else 160)
        )
    if answer.citations:
        parts.append("</div>")
    parts.append(_plain_html(plain_answer(answer)))
    parts.append("</div>")
    return "".join(parts)


def render_partial(text: str, question: str, rewritten: str | None) -> str:
    """An answer still streaming in: the text so far and a cursor.

    The text is escaped and nothing in it is linked: which `[n]` are citations is known
    only from the finished Answer, which replaces this.
    """
    return (
        f'<div class="rag-answer rag-streaming">{_rewritten_html(question, rewritten)}'
        f'<div class="rag-text">{esc(text)}<span class="rag-cursor">▍</span></div></div>'
    )


def render_error(message: str) -> str:
    return f'<div class="rag-answer"><div class="rag-error">出错了：{esc(message)}</div></div>'


def render_user(question: str) -> str:
    return f'<div class="rag-user">{esc(question)}</div>'


VIEWER_EMPTY = '<div class="rag-doc rag-doc-empty">点击回答下方的引用，在这里查看原文。</div>'


def render_document(
    title: str,
    text: str,
    meta: dict[str, Any],
    passage: tuple[int, int] | None = None,
    quotes: Sequence[tuple[int, int]] = (),
    cite_n: int | None = None,
    note: str = "",
    max_chars: int = MAX_DOC_VIEW_CHARS,
) -> str:
    """A whole document, its cited passage highlighted (class rag-target) and quotes marked.

    Offsets are in `text`. Very long documents are cut to a window around the passage.
    """
    head = [f'<div class="rag-doc-title">{esc(title)}</div>']
    bits = [_date_zh(meta.get("date"))]
    if meta.get("source_name"):
        bits.append(str(meta["source_name"]))
    origin = provenance(meta.get("meta") or meta)
    if origin:
        bits.append(origin)
    if meta.get("encoding"):
        bits.append(f"编码 {meta['encoding']}")
    bits.append(f"{len(text)} 字")
    head.append(f'<div class="rag-doc-meta">{esc(" · ".join(bits))}</div>')
    if passage is not None and cite_n is not None:
        head.append(
            f'<div class="rag-doc-cite">引用 [{cite_n}]：{esc(location_zh(passage[0], passage[1], len(text)))}</div>'
        )
    if note:
        head.append(f'<div class="rag-doc-note">{esc(note)}</div>')

    lo, hi = 0, len(text)
    if len(text) > max_chars:
        centre = passage[0] if passage else 0
        lo = max(0, centre - max_chars // 2)
        hi = min(len(text), lo + max_chars)
    body = []
    if lo > 0:
        body.append(f'<div class="rag-doc-cut">……（前 {lo} 字略）</div>')
    if passage is None:
        body.append(esc(text[lo:hi]))
    else:
        ps, pe = max(lo, passage[0]), min(hi, passage[1])
        rel = [(qs - ps, qe - ps) for qs, qe in quotes]
        body.append(esc(text[lo:ps]))
        body.append(
            f'<span class="rag-passage-hl rag-target">{mark_spans(text[ps:pe], rel)}</span>'
        )
        body.append(esc(text[pe:hi]))
    if hi < len(text):
        body.append(f'<div class="rag-doc-cut">……（后 {len(text) - hi} 字略）</div>')
    text_html = re.sub(r"(?:<br>){3,}", "<br><br>", "".join(body))
    return (
        f'<div class="rag-doc"><div class="rag-doc-head">{"".join(head)}</div>'
        f'<div class="rag-doc-text">{text_html}</div></div>'
    )


def render_remove_confirm(names: Sequence[str]) -> str:
    """The question asked before documents are removed, naming each as the pick list does."""
    items = "".join(f"<li>{esc(n)}</li>" for n in names)
    return (
        f'<div class="rag-confirm"><b>确定从知识库删除以下 {len(names)} 篇文档吗？</b>'
        f"<ul>{items}</ul>删除后不能再从中检索，也无法撤销。</div>"
    )


def render_results(results: Sequence[UploadResult]) -> str:
    """Per-file outcome of an upload or removal, as a small table."""
    if not results:
        return ""
    rows = []
    for r in results:
        detail = (
            public_text(r.reason)
            if r.status == "failed"
            else (f"{r.chunks} 个片段" if r.chunks else "")
        )
        rows.append(
            f'<tr class="rag-result rag-result-{esc(r.status)}"><td>{esc(r.name)}</td>'
            f'<td class="rag-status">{esc(STATUS_ZH.get(r.status, r.status))}</td>'
            f"<td>{esc(detail)}</td></tr>"
        )
    return (
        '<table class="rag-results"><thead><tr><th>文件</th><th>结果</th><th>说明</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


# =========================================================================== the app
# Gradio's own chat strings (its i18n keys), in Chinese for every browser language;
# tooltips Gradio fixes in English ("Liked", "Fullscreen") are renamed by VIEWER_JS
UI_STRINGS = {
    "chatbot.copy_message": "复制",
    "chatbot.copied_message": "已复制",
    "chatbot.like": "赞",
    "chatbot.dislike": "踩",
    "chatbot.clear": "清空对话",
    "chatbot.retry": "重试",
    "chatbot.undo": "撤销",
    "chatbot.edit": "编辑",
    "chatbot.submit": "提交",
    "chatbot.cancel": "取消",
    "upload_text.click_to_upload": "点击上传",
    "upload_text.drop_file": "将文件拖放到此处",
    "common.or": "或",
    "common.download": "下载",
    "common.download_all": "全部下载",
    "common.share": "分享",
    "common.clear": "清除",
    "common.remove": "移除",
    "common.edit": "编辑",
    "common.empty": "空",
    "common.error": "出错",
    "common.loading": "加载中",
    "common.submit": "提交",
    "common.undo": "撤销",
}

CSS = """
.rag-answer { line-height: 1.7; }
.rag-plain { display: none; }
.rag-confirm { border: 1px solid #f59e0b; background: #fffbeb; border-radius: 8px;
  padding: 0.5em 0.8em; }
.rag-rewritten { font-size: 0.85em; color: #6b7280; margin-bottom: 0.4em; }
.rag-notice { font-size: 0.9em; color: #92400e; margin-bottom: 0.4em; }
.rag-text { white-space: pre-line; }
.rag-confidence { font-size: 0.85em; margin: 0.3em 0; color: #4b5563; }
.rag-conf-high { color: #166534; } .rag-conf-mid { color: #92400e; } .rag-conf-low { color: #991b1b; }
.rag-refusal { border: 1px solid #f59e0b; background: #fffbeb; color: #92400e;
  border-radius: 8px; padding: 0.5em 0.8em; font-weight: 600; }
.rag-error { border: 1px solid #ef4444; background: #fef2f2; color: #991b1b;
  border-radius: 8px; padding: 0.5em 0.8em; }
.rag-related-label, .rag-cites-label { font-size: 0.85em; color: #6b7280; margin: 0.7em 0 0.3em; }
.rag-cites { display: flex; flex-direction: column; gap: 0.5em; }
.rag-card { border: 1px solid #e5e7eb; border-radius: 8px; padding: 0.5em 0.7em; cursor: pointer;
  background: #fafafa; font-size: 0.9em; }
.rag-card:hover { border-color: #3b82f6; background: #eff6ff; }
.rag-related .rag-card { opacity: 0.85; }
.rag-card-head { font-weight: 600; }
.rag-badge { color: #2563eb; margin-right: 0.3em; }
.rag-kb { color: #047857; font-weight: normal; }
.rag-meta { font-size: 0.85em; color: #6b7280; }
.rag-provenance { font-size: 0.85em; color: #b45309; }
.rag-warn { font-size: 0.85em; color: #b91c1c; font-weight: 600; }
.rag-passage { max-height: 9.5em; overflow: auto; margin-top: 0.3em; }
.rag-open { font-size: 0.8em; color: #2563eb; text-align: right; }
.rag-marker { color: #2563eb; cursor: pointer; font-weight: 600; }
mark.rag-quote { background: #fde68a; color: inherit; padding: 0 1px; border-radius: 2px; }
.rag-cursor { color: #9ca3af; }
.rag-doc { font-size: 0.95em; line-height: 1.8; }
.rag-doc-empty { color: #6b7280; padding: 1em; }
.rag-doc-head { position: sticky; top: 0; background: var(--block-background-fill, #fff);
  border-bottom: 1px solid #e5e7eb; padding: 0.3em 0 0.5em; margin-bottom: 0.5em; }
.rag-doc-title { font-weight: 700; font-size: 1.05em; }
.rag-doc-meta, .rag-doc-cite, .rag-doc-note, .rag-doc-cut { font-size: 0.85em; color: #6b7280; }
.rag-doc-text { white-space: normal; }
.rag-passage-hl { background: #dbeafe; border-radius: 3px; }
.rag-results { border-collapse: collapse; width: 100%; font-size: 0.9em; }
.rag-results th, .rag-results td { border-bottom: 1px solid #e5e7eb; padding: 0.3em 0.5em; text-align: left; }
.rag-result-failed .rag-status { color: #b91c1c; font-weight: 600; }
.rag-result-added .rag-status, .rag-result-updated .rag-status { color: #15803d; font-weight: 600; }
"""


# Runs once per page, bound to the document viewer: a click on any citation (card or
# [n] marker, anywhere on the page) asks the server for that document; when the viewer
# has new content, the highlighted passage is scrolled into view.
VIEWER_JS = """
const COPY_LABELS = ['复制', '已复制', 'Copy message', 'Copied message'];
const onCite = (e) => {
  const el = e.target.closest('.rag-cite');
  if (!el) return;
  const m = /\\brag-at-(\\d+)-(\\d+)\\b/.exec(el.className);
  if (!m) return;
  e.preventDefault();
  trigger('click', {turn: Number(m[1]), n: Number(m[2])});
};
if (window.__ragOnCite) document.removeEventListener('click', window.__ragOnCite);
window.__ragOnCite = onCite;
document.addEventListener('click', onCite);
// The chat's copy button copies a message's content, which is HTML; for an answer it
// copies the plain text kept in its hidden .rag-plain instead (render.plain_answer).
const onCopy = (e) => {
  const b = e.target.closest('#rag-chat .message-buttons button');
  if (!b || !COPY_LABELS.includes(b.getAttribute('aria-label'))) return;
  // a message's buttons follow its row (Gradio draws them as the row's next sibling)
  let row = b.closest('.message-buttons')?.previousElementSibling;
  while (row && !row.classList.contains('message-row')) row = row.previousElementSibling;
  const plain = row?.querySelector('.rag-plain');
  if (!plain) return;
  e.preventDefault();
  e.stopImmediatePropagation();
  const text = [...plain.children].map((d) => d.textContent).join('\\n');
  navigator.clipboard.writeText(text).then(() => {
    b.setAttribute('aria-label', '已复制');
    b.title = '已复制';
    setTimeout(() => { b.setAttribute('aria-label', '复制'); b.title = '复制'; }, 1500);
  });
};
if (window.__ragOnCopy) document.removeEventListener('click', window.__ragOnCopy, true);
window.__ragOnCopy = onCopy;
document.addEventListener('click', onCopy, true);
// Tooltips Gradio writes in fixed English (no i18n key): renamed wherever they appear
const FIXED_EN = {
  'Liked': '已赞', 'Disliked': '已踩', 'Copy table data': '复制表格',
  'Copied to clipboard': '已复制', 'Fullscreen': '全屏', 'Exit fullscreen': '退出全屏',
  'Toggle Sidebar': '展开或收起侧栏', 'Click to upload or drop files': '点击上传或拖放文件',
  'File upload': '上传文件', 'More tabs': '更多标签页', 'Open cell menu': '单元格菜单',
  'Reset to default value': '恢复默认值', 'Table actions': '表格操作',
  'chatbot conversation': '对话记录',
};
const FIXED_EN_PREFIX = [
  ['Select example ', '选择示例 '], ['number input for ', '输入数值：'],
  ['range slider for ', '拖动选择：'],
];
// a chat message's label: Gradio writes "bot's message: " and the message's raw HTML
const MESSAGE_PREFIX = [["bot's message: ", '回答：'], ["user's message: ", '提问：']];
const zhOf = (v) => {
  if (!v) return null;
  if (FIXED_EN[v]) return FIXED_EN[v];
  const m = MESSAGE_PREFIX.find(([en]) => v.startsWith(en));
  if (m) {  // its text, read by a parser that runs nothing the HTML holds
    const doc = new DOMParser().parseFromString(v.slice(m[0].length), 'text/html');
    return m[1] + (doc.body.textContent || '').replace(/\\s+/g, ' ').trim().slice(0, 200);
  }
  const p = FIXED_EN_PREFIX.find(([en]) => v.startsWith(en));
  return p ? p[1] + v.slice(p[0].length) : null;
};
const renameIn = (root) => {
  const els = root.querySelectorAll ? [root, ...root.querySelectorAll('[aria-label],[title]')] : [];
  for (const el of els) {
    for (const a of ['aria-label', 'title']) {
      const zh = zhOf(el.getAttribute && el.getAttribute(a));
      if (zh) el.setAttribute(a, zh);
    }
  }
};
if (window.__ragRename) window.__ragRename.disconnect();
window.__ragRename = new MutationObserver((changes) => {
  for (const c of changes) {
    if (c.type === 'attributes') renameIn(c.target);
    else c.addedNodes.forEach(renameIn);
  }
});
window.__ragRename.observe(document.body, {
  subtree: true, childList: true, attributes: true, attributeFilter: ['aria-label', 'title'],
});
renameIn(document.body);
watch('value', () => {
  const t = element.querySelector('.rag-target');
  if (t) t.scrollIntoView({block: 'center'});
});
"""
