"""`report.html`: the run's report as one self-contained page, for people to read and explore.

Everything is inside the file: the plots as base64 PNGs, the styles, and a few lines of
JavaScript that sort and filter the table of every question. No server, no CDN: it
opens from disk (or an e-mail attachment) in any browser.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rag.eval import report_plots as P
from rag.eval.report import METRIC_ROWS, PLOTS, data_notes, fmt
from rag.eval.rows import outcome, row_type

HTML_FILE = "report.html"
_ANSWER_CHARS = 300  # of each answer in the table (the full text is in results.jsonl)


def first_gold_rank(row: Mapping[str, Any]) -> int | None:
    """1-based rank of the first gold document among the retrieved ones, None if absent."""
    gold = set(row.get("gold_doc_ids") or ())
    for i, d in enumerate(row.get("retrieved_doc_ids") or (), start=1):
        if d in gold:
            return i
    return None


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _metric_table(metrics: Mapping[str, Any]) -> str:
    ci = metrics.get("ci95") or {}
    out = [
        "<table class='metrics'><tr><th>metric</th><th>value</th><th>95% CI</th><th>over</th></tr>"
    ]
    for key, label, over in METRIC_ROWS:
        if metrics.get(key) is None:
            continue
        c = ci.get(key)
        interval = f"[{fmt(key, c[0])}, {fmt(key, c[1])}]" if c else ""
        out.append(
            f"<tr><td>{_e(label)}</td><td class='num'>{_e(fmt(key, metrics[key]))}</td>"
            f"<td>{_e(interval)}</td><td>{_e(over)}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def question_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One plain record per question, as the table shows it."""
    out = []
    for r in rows:
        ok = outcome(r)
        answer = "" if r.get("refused") else str(r.get("answer") or "")
        if r.get("answerable"):
            gold = " / ".join((r.get("answers") or [])[:3]) or "(documents only)"
        else:
            gold = "(refuse)"
        out.append(
            {
                "id": r.get("question_id"),
                "type": row_type(r),
                "question": r.get("question") or "",
                "rank": first_gold_rank(r),
                "answer": answer[:_ANSWER_CHARS] + ("…" if len(answer) > _ANSWER_CHARS else ""),
                "gold": gold,
                "outcome": "–" if ok is None else ("right" if ok else "wrong"),
                "refused": bool(r.get("refused")),
                "confidence": r.get("confidence"),
                "ms": (r.get("timings_ms") or {}).get("total"),
            }
        )
    return out


_COLUMNS = (
    ("id", "id", "text"),
    ("type", "type", "text"),
    ("question", "question", "text"),
    ("rank", "rank of first gold hit", "num"),
    ("answer", "answer", "text"),
    ("gold", "gold", "text"),
    ("outcome", "outcome", "text"),
    ("refused", "refused", "text"),
    ("confidence", "refusal score", "num"),
    ("ms", "ms", "num"),
)


def _question_table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(
        f"<th data-key='{k}' data-kind='{kind}' tabindex='0'>{_e(label)}</th>"
        for k, label, kind in _COLUMNS
    )
    body = []
    for q in question_rows(rows):
        cells = []
        for k, _label, kind in _COLUMNS:
            v = q[k]
            if k == "refused":
                v = "yes" if v else "no"
            shown = "–" if v is None else (f"{v:.3f}" if k == "confidence" else v)
            sort = "" if v is None else v
            cells.append(f"<td data-v='{_e(sort)}' class='{kind}'>{_e(shown)}</td>")
        body.append(
            f"<tr data-outcome='{q['outcome']}' data-refused='{'yes' if q['refused'] else 'no'}' "
            f"data-type='{_e(q['type'])}'>{''.join(cells)}</tr>"
        )
    types = sorted({q["type"] for q in question_rows(rows)})
    type_options = "".join(f"<option value='{_e(t)}'>{_e(t)}</option>" for t in types)
    return f"""
<div class="filters">
  <label>search <input id="q" type="search" placeholder="id, question, answer, gold …"></label>
  <label>outcome <select id="outcome"><option value="">all</option><option value="right">right</option>
    <option value="wrong">wrong</option><option value="–">not judged</option></select></label>
  <label>refused <select id="refused"><option value="">all</option><option value="yes">yes</option>
    <option value="no">no</option></select></label>
  <label>type <select id="type"><option value="">all</option>{type_options}</select></label>
  <span id="count"></span>
</div>
<table id="questions"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>"""


_SCRIPT = """
(function () {
  const table = document.getElementById('questions');
  const tbody = table.tBodies[0];
  const rows = Array.from(tbody.rows);
  const q = document.getElementById('q'), oc = document.getElementById('outcome'),
        rf = document.getElementById('refused'), ty = document.getElementById('type'),
        count = document.getElementById('count');
  function filter() {
    const needle = q.value.trim().toLowerCase();
    let shown = 0;
    for (const r of rows) {
      const ok = (!oc.value || r.dataset.outcome === oc.value) &&
                 (!rf.value || r.dataset.refused === rf.value) &&
                 (!ty.value || r.dataset.type === ty.value) &&
                 (!needle || r.textContent.toLowerCase().includes(needle));
      r.hidden = !ok;
      if (ok) shown++;
    }
    count.textContent = shown + ' of ' + rows.length + ' questions';
  }
  function sortBy(th) {
    const i = th.cellIndex, num = th.dataset.kind === 'num';
    const dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
    for (const h of table.tHead.rows[0].cells) { delete h.dataset.dir; }
    th.dataset.dir = dir;
    const sign = dir === 'asc' ? 1 : -1;
    const key = r => r.cells[i].dataset.v;
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === '' || y === '') { return (x === '') - (y === ''); }  // blanks last
      return sign * (num ? parseFloat(x) - parseFloat(y) : x.localeCompare(y, 'zh'));
    });
    for (const r of rows) tbody.appendChild(r);
  }
  for (const th of table.tHead.rows[0].cells) {
    th.addEventListener('click', () => sortBy(th));
    th.addEventListener('keydown', e => { if (e.key === 'Enter') sortBy(th); });
  }
  for (const el of [q, oc, rf, ty]) el.addEventListener('input', filter);
  filter();
})();
"""

_STYLE = """
body { font-family: system-ui, "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif; margin: 1.5em auto;
       max-width: 1400px; padding: 0 1em; color: #222; }
pre { background: #f4f4f4; padding: .6em; overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; vertical-align: top; }
th { background: #f0f0f0; position: sticky; top: 0; cursor: pointer; }
th[data-dir=asc]::after { content: " ▲"; } th[data-dir=desc]::after { content: " ▼"; }
td.num { text-align: right; white-space: nowrap; }
tr[data-outcome=wrong] td:nth-child(7) { color: #b00; } tr[data-outcome=right] td:nth-child(7) { color: #070; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; } img { max-width: 100%; }
figcaption { font-size: 12px; color: #555; } .filters { margin: .6em 0; display: flex; gap: 1em; flex-wrap: wrap; }
"""


def render_html(
    rows: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    config: Mapping[str, Any],
    out_dir: Path,
    name: str,
) -> str:
    """The page; the PNG plots already written into `out_dir` are inlined, the rest drawn here."""
    figures = []
    for png, alt in zip(PLOTS, ("recall@k and hit@k", "by question type", "latency")):
        path = Path(out_dir) / png
        if path.is_file():
            figures.append(_img(path.read_bytes(), alt))
    try:
        P.quiet_fonts()
        extra = (
            (
                P.plot_reliability(rows, f"Refusal score reliability: {name}"),
                "reliability of the refusal score",
            ),
            (
                P.plot_tradeoff(rows, config, f"Refusal threshold: {name}"),
                "refusal / false refusal trade-off",
            ),
            (P.plot_answer_lengths(rows, f"Answer length: {name}"), "answer length"),
        )
    except ImportError:  # matplotlib is optional
        extra = ()
    figures += [_img(png, alt) for png, alt in extra if png]
    notes = "".join(f"<li>{_e(n)}</li>" for n in data_notes(config))
    run = metrics.get("run") or {}
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>Evaluation: {_e(name)}</title>
<style>{_STYLE}</style></head><body>
<h1>Evaluation: {_e(name)}</h1>
<p>Started {_e(config.get("started"))}; {_e(metrics.get("n"))} questions
({_e(metrics.get("n_answerable"))} answerable, {_e(metrics.get("n_unanswerable"))} unanswerable);
{_e(round(float(run.get("seconds") or 0)))} s in all, index {_e(round(float(run.get("index_seconds") or 0)))} s.
Definitions of every figure: <code>eval/README.md</code>; the Markdown version of this report: <code>report.md</code>.</p>
<pre>{_e(config.get("command") or "(called from Python)")}</pre>
{f"<ul>{notes}</ul>" if notes else ""}
<h2>Metrics</h2>
<p>Intervals: percentile bootstrap over the questions (1,000 resamples, seed 0).</p>
{_metric_table(metrics)}
<h2>Plots</h2>
<p>The reliability diagram bins the questions by the refusal score (the answerer's P(answerable)) and
shows, per bin, the share that is answerable and the share answered right: a calibrated score lies on
the diagonal. The trade-off shows what raising the threshold above this run's would refuse.</p>
<div class="plots">{"".join(figures)}</div>
<h2>Every question</h2>
<p>Click a column to sort (again to reverse); the filters combine. Rank: of the first gold document
among the 10 distinct documents retrieved (– when none of them is gold).</p>
{_question_table(rows)}
<script>{_SCRIPT}</script>
</body></html>
"""


def write_html(
    out_dir: Path,
    rows: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    config: Mapping[str, Any],
) -> Path:
    """Write `report.html` into `out_dir` (beside report.md and its PNGs)."""
    from rag.fileio import write_text_atomic

    out_dir = Path(out_dir)
    path = out_dir / HTML_FILE
    write_text_atomic(path, render_html(rows, metrics, config, out_dir, out_dir.name))
    return path
