"""Fixed-width text tables for the command-line tools (parity, inspect, encode)."""

from __future__ import annotations

from typing import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]], marks: dict[int, str] | None = None) -> str:
    """Columns padded to their widest cell, left-aligned; ``marks`` appends a note to row i."""
    cells = [[str(cell) for cell in header]] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        note = (marks or {}).get(index - 1)
        lines.append(f"{line}  {note}" if note else line)
    return "\n".join(lines)


def format_number(value: float | None) -> str:
    """3 significant digits; exact zero as 0; None (not computed) as '-'."""
    if value is None:
        return "-"
    return "0" if value == 0 else f"{value:.3g}"
