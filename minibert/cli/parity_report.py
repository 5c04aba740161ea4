"""The parity report as text (a table per comparison, the first row over tolerance marked) and as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..loading.atomic import save_files
from .parity import Table
from .text_table import format_number, format_table


def first_exceeded(tables: list[Table]) -> tuple[int, int] | None:
    """(table index, row index) of the first row over its tolerance, in printing order."""
    for table_index, table in enumerate(tables):
        for row_index, row in enumerate(table.rows):
            if row.exceeded:
                return table_index, row_index
    return None


def tables_to_json(model: str, device: str, tables: list[Table]) -> dict[str, Any]:
    first = first_exceeded(tables)
    return {
        "model": str(model), "device": device, "passed": first is None,
        "first_exceeded": None if first is None else {"table": tables[first[0]].title,
                                                      "stage": tables[first[0]].rows[first[1]].stage},
        "tables": [{"title": table.title, "notes": table.notes, "rows": [_json_row(row) for row in table.rows]}
                   for table in tables],
    }


def _json_row(row: Any) -> dict[str, Any]:
    """A row for strict JSON: a NaN or infinite value becomes null, and "null_because" says what it was."""
    values, reasons = {}, {}
    for key, value in row.values.items():
        if isinstance(value, float) and not math.isfinite(value):
            values[key] = None
            reasons[key] = ("NaN: the outputs hold NaN (an overflow of the dtype, or 0/0)" if math.isnan(value) else
                            f"{value}: infinite (an overflow of the dtype, or a division by a zero error)")
        else:
            values[key] = value
    return {"stage": row.stage, **values, "exceeded": row.exceeded, **({"null_because": reasons} if reasons else {})}


def write_json(path: str, document: dict[str, Any]) -> None:
    """``path`` '-' prints the document; any other path is written, all or nothing.

    Strict JSON (``jq`` reads it): a value that is not finite must have been replaced (see tables_to_json).
    """
    text = json.dumps(document, indent=2, allow_nan=False)
    if path == "-":
        print(text)
    else:
        target = Path(path)
        save_files(target.parent, {target.name: lambda staged: staged.write_text(text + "\n", encoding="utf-8")})


def format_tables(tables: list[Table]) -> str:
    """The tables as text; the first row over its tolerance is marked, and a last line says the verdict."""
    first = first_exceeded(tables)
    blocks = []
    for table_index, table in enumerate(tables):
        lines = [table.title]
        if table.rows:
            cells = [[row.stage] + [_cell(value) for value in row.values.values()] for row in table.rows]
            marks = {first[1]: "<-- first over tolerance"} if first and first[0] == table_index else {}
            lines.append(format_table(table.columns, cells, marks))
        lines += [f"note: {note}" for note in table.notes]
        blocks.append("\n".join(lines))
    if first is None:
        verdict = "all compared rows within tolerance"
    else:
        verdict = f"over tolerance, first at: {tables[first[0]].rows[first[1]].stage} in \"{tables[first[0]].title}\""
    return "\n\n".join(blocks + [verdict])


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format_number(value)
