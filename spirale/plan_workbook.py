"""The action plan as an Excel workbook (``.xlsx``, opened by Excel and LibreOffice).

Three sheets: ``Plan`` (per ISO week, sequence and owner: sends by channel, leads reached, budget),
``Sales tasks`` (per salesperson and week) and ``Summary`` (totals, unit costs and what the numbers
assume). Cells carry real types (dates, integers, amounts in euros) so sorting, filters and sums work;
every sheet has a frozen header row, an autofilter and fitted column widths.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from sequences.schema import Channel
from spirale.action_plan import ActionPlan, PlanLine, TaskLine

EURO = '#,##0.00 "€"'
UNIT_EURO = '#,##0.000 "€"'
DATE = "yyyy-mm-dd"
DATETIME = "yyyy-mm-dd hh:mm"
INTEGER = "#,##0"
_HEADER_FONT = Font(bold=True)
_HEADER_FILL = PatternFill("solid", fgColor="E5E7EB")
_MAX_WIDTH = 60

PLAN_COLUMNS = (
    ("Week", None),
    ("Week start", DATE),
    ("Sequence", None),
    ("Owner", None),
    ("Emails", INTEGER),
    ("SMS", INTEGER),
    ("SMS segments", INTEGER),
    ("Calls", INTEGER),
    ("LinkedIn", INTEGER),
    ("Other tasks", INTEGER),
    ("Leads targeted", INTEGER),
    ("Budget", EURO),
)
TASK_COLUMNS = (
    ("Week", None),
    ("Week start", DATE),
    ("Owner", None),
    ("Open tasks", INTEGER),
    ("of which overdue", INTEGER),
    ("Planned calls", INTEGER),
    ("Planned LinkedIn", INTEGER),
    ("Planned other tasks", INTEGER),
    ("Total", INTEGER),
    ("Calls budget", EURO),
)

ASSUMPTIONS = (
    "Sends are projected from the active enrollments with the sequences' spacing and send windows, "
    "in each lead's time zone.",
    "A step counts when the lead has the address and the consent, is not suppressed, passes the "
    "step's condition and is not in the holdout.",
    "Frequency-cap deferrals and early exits (replies, conversions) are not foreseen: the plan is an "
    "upper bound.",
    "SMS cost is per segment; segments are estimated with the sample lead.",
    "Sequences with calls or LinkedIn steps are owned by each lead's salesperson; the others by marketing.",
)


def write_workbook(plan: ActionPlan, path: Path, *, generated_at: datetime) -> None:
    """Write ``plan`` to ``path`` (the parent directory is created)."""
    workbook = Workbook()
    sheet = workbook.worksheets[0]
    sheet.title = "Plan"
    _table(sheet, PLAN_COLUMNS, (_plan_row(line, plan) for line in plan.lines))
    _table(
        workbook.create_sheet("Sales tasks"),
        TASK_COLUMNS,
        (_task_row(line, plan) for line in plan.tasks),
    )
    _summary(workbook.create_sheet("Summary"), plan, generated_at)
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)


def _plan_row(line: PlanLine, plan: ActionPlan) -> list[Any]:
    counts = line.counts
    return [
        line.week,
        line.week_start,
        line.sequence,
        line.owner,
        counts[Channel.EMAIL.value],
        counts[Channel.SMS.value],
        counts["sms_segments"],
        counts[Channel.CALL.value],
        counts[Channel.LINKEDIN.value],
        counts[Channel.TASK.value],
        len(line.leads),
        line.budget(plan.costs),
    ]


def _task_row(line: TaskLine, plan: ActionPlan) -> list[Any]:
    planned = line.planned
    calls, linkedin, other = (planned[c.value] for c in (Channel.CALL, Channel.LINKEDIN, Channel.TASK))
    return [
        line.week,
        line.week_start,
        line.owner,
        line.open_tasks,
        line.overdue,
        calls,
        linkedin,
        other,
        line.open_tasks + calls + linkedin + other,
        round(calls * plan.costs.call, 4),
    ]


def _table(sheet: Worksheet, columns: Sequence[tuple[str, str | None]], rows: Iterable[list[Any]]) -> None:
    sheet.append([name for name, _ in columns])
    for cell in sheet[1]:
        cell.font, cell.fill = _HEADER_FONT, _HEADER_FILL
    for values in rows:
        sheet.append(values)
    for index, (_, number_format) in enumerate(columns, start=1):
        if number_format:
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = number_format
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    _fit_widths(sheet)


def _summary(sheet: Worksheet, plan: ActionPlan, generated_at: datetime) -> None:
    totals = _totals(plan)
    rows: list[tuple[str, Any, str | None]] = [
        ("Generated (UTC)", generated_at.astimezone(UTC).replace(tzinfo=None), DATETIME),
        ("First week", plan.first_week, DATE),
        ("Weeks", plan.weeks, INTEGER),
        ("Cost per email", plan.costs.email, UNIT_EURO),
        ("Cost per SMS segment", plan.costs.sms, UNIT_EURO),
        ("Cost per call", plan.costs.call, UNIT_EURO),
        ("Total emails", totals[Channel.EMAIL.value], INTEGER),
        ("Total SMS", totals[Channel.SMS.value], INTEGER),
        ("Total SMS segments", totals["sms_segments"], INTEGER),
        ("Total calls", totals[Channel.CALL.value], INTEGER),
        ("Total LinkedIn", totals[Channel.LINKEDIN.value], INTEGER),
        ("Total budget", round(sum(line.budget(plan.costs) for line in plan.lines), 2), EURO),
    ]
    sheet.append(["Item", "Value"])
    for cell in sheet[1]:
        cell.font, cell.fill = _HEADER_FONT, _HEADER_FILL
    for label, value, number_format in rows:
        sheet.append([label, value])
        if number_format:
            sheet.cell(row=sheet.max_row, column=2).number_format = number_format
    for note in (*ASSUMPTIONS, *plan.warnings):
        sheet.append(["Note" if note in ASSUMPTIONS else "Warning", note])
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    _fit_widths(sheet)


def _totals(plan: ActionPlan) -> dict[str, int]:
    totals: dict[str, int] = {}
    for line in plan.lines:
        for key, count in line.counts.items():
            totals[key] = totals.get(key, 0) + count
    return {key: totals.get(key, 0) for key in (*(c.value for c in Channel), "sms_segments")}


def _fit_widths(sheet: Worksheet) -> None:
    for index, column in enumerate(sheet.iter_cols(), start=1):
        width = max(len(_shown(cell.value)) for cell in column)
        sheet.column_dimensions[get_column_letter(index)].width = min(width + 2, _MAX_WIDTH)


def _shown(value: object) -> str:
    if isinstance(value, datetime):
        return "yyyy-mm-dd hh:mm"
    if isinstance(value, date):
        return "yyyy-mm-dd"
    if isinstance(value, float):
        return f"{value:,.2f} €"
    return "" if value is None else str(value)
