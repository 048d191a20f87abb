"""The A/B review of an experiment: the funnel of each arm, the statistics of the chosen metric
against the holdout, the recommendation and the promotion history; rendered as a text table, JSON,
Markdown (the Prefect artifact) or a self-contained HTML page with an inline SVG chart of the rates
and their 95% intervals (no network, no plotting library).
"""

from __future__ import annotations

import html
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from models.db import read_only_connection
from scoring.ab_stats import (
    ALPHA,
    ArmCounts,
    ArmStats,
    ExperimentStats,
    analyze,
    percent,
    points,
    probability,
)
from scoring.experiments import DEFAULT_WINDOW, METRICS, ArmOutcome, Experiment, measure, resolve_experiment
from scoring.promotion import PromotionRecord, promotion_history
from sequences.catalog import SequenceCatalog
from sequences.variants import HOLDOUT
from spirale.errors import SequenceError

#: How each metric reads in a sentence ("its conversion rate").
METRIC_NOUNS = {
    "sent": "send",
    "delivered": "delivery",
    "opens": "open",
    "clicks": "click",
    "replies": "reply",
    "meetings": "meeting",
    "conversions": "conversion",
}
FUNNEL = ("recipients", *METRICS)
Scale = Callable[[float], float]


@dataclass(frozen=True)
class Review:
    """Everything a marketing lead reads to decide which offer to keep."""

    experiment: Experiment
    metric: str
    window: timedelta
    generated_at: datetime
    outcomes: tuple[ArmOutcome, ...]
    stats: ExperimentStats
    promotions: tuple[PromotionRecord, ...] = ()

    @property
    def promoted(self) -> PromotionRecord | None:
        return self.promotions[-1] if self.promotions else None

    @property
    def open_windows(self) -> int:
        return sum(outcome.open_windows for outcome in self.outcomes)

    def outcome(self, arm: str) -> ArmOutcome:
        return next(outcome for outcome in self.outcomes if outcome.arm == arm)

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per arm (holdout first): funnel counts, then the statistics, formatted."""
        return [{**self._funnel(arm.id), **format_arm(arm)} for arm in self.stats.arms]

    def funnel_rows(self) -> list[dict[str, Any]]:
        """One row per arm: the funnel counts (distinct leads) and the conversion value."""
        return [self._funnel(arm.id) for arm in self.stats.arms]

    def stats_rows(self) -> list[dict[str, Any]]:
        """One row per arm: the chosen metric's count, rate, intervals, lifts and tests."""
        return [
            {"arm": arm.id, "n": arm.n, self.metric: arm.conversions, **format_arm(arm)}
            for arm in self.stats.arms
        ]

    def _funnel(self, arm: str) -> dict[str, Any]:
        outcome = self.outcome(arm)
        return {
            "arm": arm,
            **{name: getattr(outcome, name) for name in FUNNEL},
            "revenue": round(outcome.revenue, 2),
        }

    def headline(self) -> str:
        return (
            f"{self.metric} within {self.window.days} days of the send (the holdout's from its assignment); "
            f"generated {self.generated_at.isoformat(timespec='minutes')}; "
            f"{self.open_windows} leads still inside their window"
        )

    def markdown(self) -> str:
        """The review as Markdown (the ``ab-<experiment>`` Prefect artifact)."""
        rows = self.table_rows()
        lines = [
            f"# A/B review: {self.experiment.name}",
            "",
            f"_{self.headline()}_",
            "",
            f"**Recommendation:** {self.stats.recommendation}",
            "",
            f"**Sample guard:** {self.stats.guard.message}.",
            "",
            *_markdown_table(rows),
            "",
            "## Promotions",
            "",
        ]
        if self.promotions:
            lines.extend(_markdown_table([p.as_row() for p in self.promotions]))
        else:
            lines.append("No promotion yet: every arm keeps its weight from the sequence file.")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """The review as plain JSON data (``spirale ab report --format json``, the API)."""
        stats = self.stats.to_json()
        for arm, data in zip(self.stats.arms, stats["variants"], strict=True):
            data["lift_abs_ci"] = list(arm.lift_abs_ci) if arm.lift_abs_ci else None
            data["lift_rel_ci"] = list(arm.lift_rel_ci) if arm.lift_rel_ci else None
            data["funnel"] = self._funnel(arm.id)
        return {
            "experiment": self.experiment.name,
            "sequence": self.experiment.sequence,
            "step": self.experiment.step,
            "metric": self.metric,
            "window_days": self.window.days,
            "generated_at": self.generated_at.isoformat(),
            "open_windows": self.open_windows,
            **stats,
            "required_per_arm": self.stats.guard.required_per_arm,
            "more_per_arm": self.stats.guard.more_per_arm,
            "winner": self.stats.winner,
            "promotions": [{**p.as_row(), "at": p.created_at.isoformat()} for p in self.promotions],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def html(self) -> str:
        """A self-contained HTML page with the chart of rates and intervals."""
        return render_html(self)


def build_review(
    engine: Engine,
    *,
    experiment: str | Experiment,
    now: datetime,
    metric: str = "conversions",
    catalog: SequenceCatalog | None = None,
    window: timedelta = DEFAULT_WINDOW,
    mde: float | None = None,
    alpha: float = ALPHA,
) -> Review:
    """Measure ``experiment`` (``sequence/step``, or ``sequence`` with one experiment) at ``now``
    and compute its statistics on ``metric``. Without a ``catalog`` the configured library is used."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: expected one of {', '.join(METRICS)}")
    if isinstance(experiment, str):
        if catalog is None:
            from spirale.settings import get_settings

            catalog = SequenceCatalog.open(get_settings().sequences_dir)
        experiment = resolve_experiment(experiment, catalog)
    if HOLDOUT not in experiment.arms:
        raise SequenceError(
            f"{experiment.name} has no holdout: add `holdout:` to the step to measure the lift"
        )
    with read_only_connection(engine) as conn:
        outcomes = measure(conn, experiment=experiment, now=now, window=window)
        history = promotion_history(conn, sequence=experiment.sequence, step=experiment.step)
    counts = [ArmCounts(o.arm, o.recipients, o.count(metric)) for o in outcomes]
    stats = analyze(counts, mde=mde, alpha=alpha, metric=METRIC_NOUNS[metric])
    return Review(experiment, metric, window, now, tuple(outcomes), stats, tuple(history))


def format_arm(arm: ArmStats) -> dict[str, str]:
    """An arm's statistics as display strings (rate, intervals, lifts, p-value, probability)."""
    low, high = arm.ci
    lift_ci = arm.lift_abs_ci
    rel_ci = arm.lift_rel_ci
    return {
        "rate": percent(arm.rate),
        "95% CI": f"{percent(low)} – {percent(high)}",
        "lift": points(arm.lift_abs, unit=False) + " pts" if arm.lift_abs is not None else "—",
        "lift 95% CI": f"{points(lift_ci[0], unit=False)} – {points(lift_ci[1], unit=False)}"
        if lift_ci
        else "—",
        "relative lift": f"{arm.lift_rel:+.0%}" if arm.lift_rel is not None else "—",
        "relative 95% CI": f"{rel_ci[0]:+.0%} – {rel_ci[1]:+.0%}" if rel_ci else "—",
        "p-value": f"{arm.p_value:.3g}" if arm.p_value is not None else "—",
        "P(beat holdout)": probability(arm.prob_beat_holdout) if arm.prob_beat_holdout is not None else "—",
    }


def _markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    header = list(rows[0])
    cells = [[str(row[key]).replace("|", "\\|").replace("\n", " ") for key in header] for row in rows]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(line) + " |" for line in cells),
    ]


def render_table(review: Review, *, width: int = 160) -> str:
    """The review as text: the recommendation, the guard, one table of arms, the promotions."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=True, highlight=False)
    console.print(f"A/B review: {review.experiment.name}", style="bold")
    console.print(review.headline())
    console.print(f"Recommendation: {review.stats.recommendation}")
    console.print(f"Sample guard: {review.stats.guard.message}")
    console.print(_rich_table(review.funnel_rows(), title="Funnel (distinct leads)"))
    console.print(_rich_table(review.stats_rows(), title=f"{review.metric.capitalize()} against the holdout"))
    if review.promotions:
        console.print(_rich_table([p.as_row() for p in review.promotions], title="Promotions"))
    return buffer.getvalue()


def _rich_table(rows: list[dict[str, Any]], *, title: str | None) -> Table:
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(str(key), justify="left" if key in ("arm", "reason", "actor") else "right")
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    return table


# -- HTML ------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:72rem;color:#1f2933}
h1{font-size:1.5rem}p.meta{color:#52606d}
.advice{background:#f0f4f8;border-left:4px solid #2680c2;padding:.8rem 1rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{padding:.35rem .6rem;border-bottom:1px solid #d9e2ec;white-space:nowrap}
th{text-align:left;background:#f5f7fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
"""


def render_html(review: Review) -> str:
    """A standalone HTML page: recommendation, chart, table, promotion history."""
    esc = html.escape
    promotions = [p.as_row() for p in review.promotions]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>A/B review: {esc(review.experiment.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>A/B review: {esc(review.experiment.name)}</h1>",
        f'<p class="meta">{esc(review.headline())}</p>',
        f'<p class="advice"><strong>Recommendation:</strong> {esc(review.stats.recommendation)}</p>',
        f"<p><strong>Sample guard:</strong> {esc(review.stats.guard.message)}.</p>",
        rate_chart(review.stats, metric=review.metric),
        f'<p class="meta">Dot: {esc(METRIC_NOUNS[review.metric])} rate; bar: its 95% interval (Wilson); '
        "dashed line: the holdout's rate; ★: the recommended offer.</p>",
        f"<h2>{esc(review.metric.capitalize())} against the holdout</h2>",
        _html_table(review.stats_rows()),
        "<h2>Funnel (distinct leads)</h2>",
        _html_table(review.funnel_rows()),
        "<h2>Promotions</h2>",
        _html_table(promotions) if promotions else "<p>No promotion yet.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _html_table(rows: list[dict[str, Any]]) -> str:
    esc = html.escape
    header = "".join(f"<th>{esc(str(key))}</th>" for key in rows[0])
    body = "".join("<tr>" + "".join(_html_cell(value) for value in row.values()) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _html_cell(value: Any) -> str:
    numeric = isinstance(value, int | float) or str(value)[:1] in "+-0123456789<>—"
    return (
        f'<td class="num">{html.escape(str(value))}</td>'
        if numeric
        else f"<td>{html.escape(str(value))}</td>"
    )


def rate_chart(stats: ExperimentStats, *, metric: str = "conversions", width: int = 720) -> str:
    """An inline SVG: per arm, the rate as a dot and its 95% interval as a bar, with the holdout's
    rate as a dashed reference line."""
    row_h, left, right, top = 34, 150, 90, 30
    height = top + row_h * len(stats.arms) + 40
    top_rate = max(high for _, high in (arm.ci for arm in stats.arms))
    scale_max = _nice_ceiling(top_rate)
    plot_w = width - left - right

    def x(rate: float) -> float:
        return left + plot_w * rate / scale_max

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{html.escape(metric)} rate per arm with 95% intervals</title>",
        *_axis(x, scale_max, top, height - 30),
    ]
    control_x = x(stats.control.rate)
    parts.append(
        f'<line x1="{control_x:.1f}" y1="{top - 8}" x2="{control_x:.1f}" y2="{height - 30}" '
        'stroke="#9aa5b1" stroke-dasharray="4 3"/>'
    )
    for index, arm in enumerate(stats.arms):
        parts.extend(
            _arm_marks(arm, index, x, top + row_h * index + row_h / 2, winner=arm.id == stats.winner)
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _nice_ceiling(value: float) -> float:
    """The axis maximum: the next of 1, 2, 2.5, 5 x 10^k above ``value`` (at least 1%)."""
    value = max(value, 0.01)
    magnitude = 10.0 ** math.floor(math.log10(value))
    for base in (1, 2, 2.5, 5):
        if base * magnitude >= value:
            return min(1.0, base * magnitude)
    return min(1.0, 10 * magnitude)


def _axis(x: Scale, scale_max: float, top: int, bottom: int) -> list[str]:
    marks = [f'<line x1="{x(0):.1f}" y1="{bottom}" x2="{x(scale_max):.1f}" y2="{bottom}" stroke="#52606d"/>']
    for step in range(5):
        rate = scale_max * step / 4
        marks.append(
            f'<line x1="{x(rate):.1f}" y1="{top - 10}" x2="{x(rate):.1f}" y2="{bottom}" stroke="#e4e7eb"/>'
            f'<text x="{x(rate):.1f}" y="{bottom + 16}" text-anchor="middle" fill="#52606d">{rate:.1%}</text>'
        )
    return marks


def _arm_marks(arm: ArmStats, index: int, x: Scale, y: float, *, winner: bool) -> list[str]:
    colour = "#9aa5b1" if arm.id == HOLDOUT else ("#2f8132" if winner else "#2680c2")
    low, high = arm.ci
    label = html.escape(arm.id) + (" ★" if winner else "")
    return [
        f'<text x="8" y="{y + 4:.1f}" fill="#1f2933">{label}</text>',
        f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" stroke="{colour}" '
        'stroke-width="6" stroke-linecap="round" opacity="0.45"/>',
        f'<circle cx="{x(arm.rate):.1f}" cy="{y:.1f}" r="6" fill="{colour}"><title>{html.escape(arm.id)}: '
        f"{percent(arm.rate)} (95% CI {percent(low)} – {percent(high)}), n = {arm.n}</title></circle>",
        f'<text x="{x(high) + 10:.1f}" y="{y + 4:.1f}" fill="#1f2933">{percent(arm.rate)}</text>',
    ]
