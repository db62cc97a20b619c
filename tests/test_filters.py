"""One builder of `Filters` for the CLI's flags, the HTTP APIs and MCP
(rag.serve.filters): the same values accepted, the same mistakes refused."""

from __future__ import annotations

import pytest

from rag.errors import ConfigError
from rag.serve.cli import main
from rag.serve.filters import make_filters, parse_where
from rag.types import Filters


def test_values_become_filters_with_iso_dates_and_named_fields():
    f = make_filters(
        doc_ids=["a", "b"], date_from="2023年5月", date_to="2023/06/30",
        doc_number="青政发〔2023〕5号", issuer="青岛市人民政府", where={"source_name": "威海新闻网"},
    )  # fmt: skip
    assert f == Filters(
        doc_ids=("a", "b"), date_from="2023-05", date_to="2023-06-30",
        where={"doc_number": "青政发〔2023〕5号", "issuer": "青岛市人民政府",
               "source_name": "威海新闻网"},
    )  # fmt: skip
    assert make_filters().empty and make_filters(doc_ids=[], date_from=" ").empty


def test_a_where_field_wins_over_the_named_one_and_blanks_are_refused():
    assert make_filters(issuer="A", where={"issuer": "B"}).where == (("issuer", "B"),)
    with pytest.raises(ConfigError, match="where 的字段名和值都不能为空"):
        make_filters(where={"issuer": " "})
    with pytest.raises(ConfigError, match=r"^--date-to 不是日期：'2023-02-30'"):
        make_filters(date_to="2023-02-30", names={"date_to": "--date-to"})
    assert parse_where(["a=1", " b = 2 "]) == {"a": "1", "b": "2"}
    with pytest.raises(ConfigError, match="--where 应写成 字段=值"):
        parse_where(["issuer"])


def test_the_cli_refuses_a_bad_date_in_one_line(corpus_settings, capsys):
    index = str(corpus_settings.index_path)
    assert main(["ask", "威海", "--index", index, "--date-from", "2023-13"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rag: --date-from 不是日期：'2023-13'；请写成 2023、2023-05 或 2023-05-17。"]
