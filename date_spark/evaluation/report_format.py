"""Numbers and tables as the report shows them: scores, shares and counts as text, escaped
HTML, plots as <img> tags."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

MAX_TABLE_ROWS = 200


def shorten(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def escape(v: Any) -> str:
    return html.escape(str(v), quote=True)


def fmt(v: Any, pct: bool = False, digits: int = 4) -> str:
    """A score or share; whole-number counts go through `count_text`."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        return f"{v:.1%}" if pct else f"{v:.{digits}f}"
    return str(v)


def count_text(v: Any) -> str:
    """A count as an integer (`1,234`), whatever numeric type it arrived as."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    try:
        return f"{round(float(v)):,}"
    except (TypeError, ValueError):
        return str(v)


def to_number(v: Any) -> float:
    """A number from a loosely typed mapping; NaN when it is not one."""
    return float(v) if is_number(v) else math.nan


def is_whole(v: Any) -> bool:
    return is_number(v) and float(v).is_integer()


def img_tag(b64: str, plot: str, alt: str, column: str | None = None) -> str:
    col = f' data-column="{escape(column)}"' if column is not None else ""
    return (
        f'<img class="plot" data-plot="{escape(plot)}"{col} alt="{escape(alt)}" '
        f'src="data:image/png;base64,{b64}">'
    )


def html_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    cls: str = "",
    numeric: Sequence[bool] | None = None,
    row_classes: Sequence[str] | None = None,
) -> str:
    num = list(numeric) if numeric is not None else [False] * len(headers)

    def cell(tag: str, i: int, v: Any) -> str:
        c = " class='num'" if i < len(num) and num[i] else ""
        return f"<{tag}{c}>{escape(v)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = ""
    for k, r in enumerate(rows):
        rc = f" class='{escape(row_classes[k])}'" if row_classes and row_classes[k] else ""
        body += f"<tr{rc}>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>"
    return (
        f'<table class="{escape(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


__all__: list[str] = []
