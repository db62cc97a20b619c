"""Which documents a question may use, from what a caller wrote: one builder of `Filters`
for the CLI's flags (`--doc`, `--date-from`, `--doc-number`, `--where F=V` ...), the HTTP
APIs' `filters` object and the MCP tools, so each accepts the same things and refuses
the same mistakes with the same Chinese reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rag.errors import ConfigError
from rag.textnorm import iso_date
from rag.types import Filters

# official-document fields with a name of their own (发文字号, 发文机关); any other
# metadata field goes through `where`
NAMED_FIELDS = ("doc_number", "issuer")


def make_filters(
    doc_ids: Sequence[str] | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    doc_number: str | None = None,
    issuer: str | None = None,
    where: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
) -> Filters:
    """`Filters` from a caller's values, dates as ISO prefixes ("2023年5月" -> "2023-05").

    `names` maps a parameter to what the caller calls it (`{"date_from": "--date-from"}`),
    so an error names the caller's own flag or field. Raises ConfigError for a date that
    is not one, or an empty metadata field name or value.
    """
    names = names or {}
    dates = {}
    for key, value in (("date_from", date_from), ("date_to", date_to)):
        if value is None or not str(value).strip():
            continue
        iso = iso_date(value)
        if iso is None:
            raise ConfigError(
                f"{names.get(key, key)} 不是日期：{str(value)[:40]!r}；"
                "请写成 2023、2023-05 或 2023-05-17。"
            )
        dates[key] = iso
    fields: dict[str, str] = {}
    named = {k: v for k, v in (("doc_number", doc_number), ("issuer", issuer)) if v}
    for key, value in {**named, **(where or {})}.items():
        if value is None:
            continue
        key, value = str(key).strip(), str(value).strip()
        if not key or not value:
            raise ConfigError(
                f"{names.get('where', 'where')} 的字段名和值都不能为空"
                "（例如 doc_number=青政发〔2023〕5号）。"
            )
        fields[key] = value
    ids = [str(d) for d in doc_ids or () if str(d).strip()]
    return Filters(doc_ids=tuple(ids) if ids else None, where=fields, **dates)


def parse_where(items: Sequence[str] | None) -> dict[str, str]:
    """The CLI's `--where FIELD=VALUE` items as a mapping."""
    out = {}
    for item in items or ():
        field, sep, value = item.partition("=")
        if not sep or not field.strip() or not value.strip():
            raise ConfigError(
                f"--where 应写成 字段=值（例如 doc_number=青政发〔2023〕5号），而不是 {item!r}"
            )
        out[field.strip()] = value.strip()
    return out
