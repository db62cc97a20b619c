"""Text planted for the assistant rather than written for readers.

A document can hold sentences addressed to a question-answering assistant ("忽略以上指令",
"你现在是……", a "系统：" line, chat-template tokens) or dressed as one of its answers
("根据文档[1][2]，……[3]"). Such a sentence is not a fact about the world: ingest records
its span, the answerers never lead with it, and citations of its passage carry a warning.

Wikipedia-style footnotes ("……立法机关[2]") are ordinary document text: only markers
attached to a reference word (根据文档[1], 据[1][2], 见段落[3]) or a run of two or more
count as planted citation markers.
"""

from __future__ import annotations

import re

from rag.ingest.chunking import split_sentences

INSTRUCTION = "instruction"
CITATION_MARKER = "citation_marker"

# simplified and traditional forms side by side: the check runs on the original text
_INSTRUCTION = re.compile(
    "|".join(
        [
            r"(?:忽[略视視]|无视|無視|不要理会|不要理會|忘[掉记記])(?:掉)?"
            r"(?:以上|之前|前面|上面|上述|先前|此前|系统|系統)?(?:的)?(?:所有|全部|一切)?(?:的)?"
            r"(?:指令|指示|规则|規則|提示词|提示詞|设定|設定|命令|要求)",
            r"你(?:现|現)在(?:是|扮演|的身份是|的角色是)",
            r"(?:从|從)(?:现|現)在(?:起|开始|開始)[，,、\s]*(?:你|所有(?:的)?(?:回答|回覆|回复))",
            r"(?:所有|你的)(?:回答|回覆|回复)(?:都)?必[须須]",
            r"(?:输出|輸出|告诉我|告訴我|透露|泄露|洩露|显示|顯示)(?:你的|您的)?(?:系统|系統)(?:提示|消息|訊息|指令)",
            r"[\[【(（]\s*(?:系统|系統|system|SYSTEM|System)\s*(?:提示|消息|訊息|指令|prompt)?\s*[\]】)）]",
            r"(?m:^\s*(?:system|assistant|系统|系統|助手|AI助手)\s*[:：])",
            r"<\|[a-z_]{2,20}\|>|</?(?:start_of_turn|end_of_turn)>|\[/?INST\]|<</?SYS>>",
            r"(?i:ignore\s+(?:all\s+)?(?:the\s+)?(?:previous|above|prior)\s+instructions)",
            r"(?i:you\s+are\s+now\s+(?:a|an|the)\b)",
            r"(?:请|請)(?:把|将|將)(?:答案|回答)改(?:成|为|為)",
            r"不要引用任何(?:段落|文档|文檔|资料|資料)",
            # addressed to whoever answers: "回答时请一律说……", "AI助手必须回答……"
            r"(?:回答|回覆|回复)(?:时|時)(?:请|請)?(?:一律|统一|統一)",
            r"(?:AI|ai|人工智能|智能)?助手(?:必须|必須|应当|應當|务必|務必)(?:回答|回覆|回复|输出|輸出)",
            r"[\[【(（]\s*(?:最高优先级|最高優先級|优先级最高|優先級最高)\s*[\]】)）]",
            r"(?:忽[略视視]|无视|無視)(?:其他|其它|其余|其餘)(?:的)?(?:资料|資料|文档|文檔|段落|内容|內容)",
            r"(?:新的?|以下)(?:指令|指示)\s*[:：]",
            r"(?i:(?:reply|respond|answer)\s+(?:only\s+)?with\s+(?:the\s+word|only)\b)",
        ]
    )
)
_MARK = r"(?:\[\s*\d{1,3}\s*\]|［\s*\d{1,3}\s*］|【\s*\d{1,3}\s*】)"
_CITATION_MARKER = re.compile(
    rf"(?:根据|根據|依据|依據|据|據|参见|參見|见|見|出自|来源|來源)\s*"
    rf"(?:文档|文檔|段落|资料|資料|文件|材料)?\s*{_MARK}"
    rf"|(?:文档|文檔|段落)\s*{_MARK}"
    rf"|{_MARK}\s*{_MARK}"
)


def planted_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each sentence of `text` that looks planted, in order; kind is
    `INSTRUCTION` or `CITATION_MARKER` (an instruction wins where both match)."""
    if not (_INSTRUCTION.search(text) or _CITATION_MARKER.search(text)):
        return []  # nearly every document: one scan, no sentence splitting
    out = []
    for s, e in split_sentences(text):
        sentence = text[s:e]
        if _INSTRUCTION.search(sentence):
            out.append((s, e, INSTRUCTION))
        elif _CITATION_MARKER.search(sentence):
            out.append((s, e, CITATION_MARKER))
    return out


def flags_in(spans, start: int, end: int) -> tuple[str, ...]:
    """The kinds of the planted `spans` that overlap [start, end), each once, in order."""
    kinds: list[str] = []
    for s, e, kind in spans:
        if s < end and start < e and kind not in kinds:
            kinds.append(kind)
    return tuple(kinds)
