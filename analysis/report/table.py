"""Table: the rows of one view as plain data (name, title, columns, rows, note), and its CSV file.

How the page shows a table (pivots, limits, heat maps, tooltips) is not here: analysis.report.layout
decides it by the table's name, and analysis.report.html draws it.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace

import numpy as np

from .layout import is_scores_column


@dataclass(repr=False)
class Table:
    name: str                 # file stem: patterns -> patterns.csv; the page's layout is looked up by it
    title: str
    columns: list[str]
    rows: list[list]
    note: str = ""            # one or two sentences: what the table shows and how to read it

    def column(self, name: str) -> list:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def records(self) -> list[dict]:
        """The rows as {column: value} dicts."""
        return [dict(zip(self.columns, r)) for r in self.rows]

    def where(self, **equal) -> "Table":
        """The rows whose columns equal the given values, e.g. t.where(layer=0, head=11)."""
        idx = {c: self.columns.index(c) for c in equal if c in self.columns}
        missing = set(equal) - set(idx)
        if missing:
            raise KeyError(f"{self.name} has no column {', '.join(sorted(missing))}; columns: {self.columns}")
        rows = [r for r in self.rows if all(r[i] == equal[c] for c, i in idx.items())]
        return replace(self, rows=rows)

    def to_pandas(self):
        """A pandas DataFrame of the rows (pandas is optional: pip install pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Table.to_pandas needs pandas: pip install pandas") from None
        return pd.DataFrame(self.rows, columns=self.columns)

    def to_csv(self, path) -> None:
        """Every column but the Scored ones (layout.scores_column: k scores a cell would multiply the CSVs'
        size by ten; to_pandas has them), each cell spreadsheet-safe (csv_safe)."""
        keep = [i for i, c in enumerate(self.columns) if not is_scores_column(c)]
        if len(keep) == len(self.columns):
            rows = self.rows
        elif keep == list(range(len(keep))):                   # the Scored columns last (as the views put them)
            rows = (r[: len(keep)] for r in self.rows)
        else:
            rows = ([r[i] for i in keep] for r in self.rows)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([self.columns[i] for i in keep])
            w.writerows([_csv_cell(v) for v in r] for r in rows)

    def _repr_html_(self) -> str:
        from .html import styled_html         # Jupyter's hook: the drawing, which reads the data, not the reverse
        return styled_html(self)

    def __repr__(self) -> str:
        return f"<Table {self.name!r}: {len(self.rows)} rows x {len(self.columns)} columns ({', '.join(self.columns[:6])}{', ...' if len(self.columns) > 6 else ''})>"

    def __len__(self) -> int:
        return len(self.rows)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_safe(v):
    """A cell a spreadsheet will not evaluate: text starting with = + - @ tab or CR gets a leading ',
    unless it is a plain number ("-1.5" stays a number). OWASP's rule against CSV injection."""
    if isinstance(v, str) and v.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(v):
        return "'" + v
    return v


_FORMULA_CHARS = frozenset(_FORMULA_START)


def _csv_cell(v):
    """display(v, digits=7) then csv_safe, in one pass (a report writes about a million cells): floats at
    float32's precision never need neutralising; text is checked once."""
    t = type(v)
    if t is float:
        return f"{v:.7g}"
    if t is str:
        return "'" + v if v and v[0] in _FORMULA_CHARS and not _PLAIN_NUMBER.fullmatch(v) else v
    if v is None:
        return ""
    if isinstance(v, np.floating):
        return f"{float(v):.7g}"
    return csv_safe(v)
