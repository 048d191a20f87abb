"""``index.html``: the demo's report, one self-contained page (inline CSS and SVG, no script, no
network) with the funnel, sends per day by channel, one lead's golden spiral, the A/B chart, the
sending rules at work and links to the messages in the outbox."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from html import escape
from pathlib import Path
from typing import Any

from scoring.ab_report import METRIC_NOUNS, rate_chart
from spirale.demo.charts import PARIS, funnel_chart, journey_rows, spiral_chart, timeline_chart
from spirale.demo.results import Results
from spirale.demo.summary import RULE_NAMES, STAGE_HELP

AB_COLUMNS = (
    "arm",
    "recipients",
    "sent",
    "opens",
    "clicks",
    "conversions",
    "rate",
    "95% CI",
    "lift",
    "P(beat holdout)",
)
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:64rem;
padding:0 1rem;color:#1f2933;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #d9e2ec}
p.meta{color:#52606d;margin-top:0}.row{display:flex;gap:2rem;flex-wrap:wrap;align-items:flex-start}
.advice{background:#f0f4f8;border-left:4px solid #2f8132;padding:.6rem 1rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{padding:.3rem .6rem;border-bottom:1px solid #e4e7eb;text-align:left}
th{background:#f5f7fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{background:#f5f7fa;padding:.1rem .3rem;border-radius:3px}
"""


def write_report(results: Results, directory: Path) -> Path:
    """Write ``directory/index.html`` (replacing an earlier one); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "index.html"
    path.write_text(render(results, directory), encoding="utf-8")
    return path


def render(results: Results, directory: Path) -> str:
    """The whole page."""
    end = results.start + timedelta(days=results.days - 1)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Spirale demo: {results.days} simulated days</title><style>{CSS}</style></head><body>",
        "<h1>Spirale demo</h1>",
        f'<p class="meta">{results.days} simulated days, {results.start:%A %d %B %Y} to {end:%A %d %B %Y}: '
        f"{results.people:,} leads in the database, every message in the local outbox.</p>",
        *_funnel(results),
        *_timeline(results),
        *_spiral(results),
        *_ab(results),
        *_rules(results),
        *_outbox(results, directory),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _funnel(results: Results) -> list[str]:
    rows = [{"stage": s, "leads": f"{n:,}", "meaning": STAGE_HELP[s]} for s, n in results.funnel]
    off = [
        {"screened out as": RULE_NAMES.get(k, k), "downloads": f"{n:,}"}
        for k, n in results.off_target.most_common()
    ]
    return [
        '<h2 id="funnel">The funnel</h2>',
        "<p>People who downloaded something, stage by stage. About nine in ten downloaders are not "
        "real leads (competitors, students, consultants, foreigners, throw-away addresses): the "
        "intake screens them out before anyone calls them.</p>",
        '<div class="row">',
        funnel_chart(results.funnel),
        table(rows),
        table(off) if off else "",
        "</div>",
    ]


def _timeline(results: Results) -> list[str]:
    return [
        '<h2 id="sends">Sends per day by channel</h2>',
        "<p>Emails go out on weekdays during office hours, SMS from 08:00 to 20:00 Monday to Saturday "
        "(never on Sundays or public holidays); everything due outside its window waits for the next "
        "allowed slot. The peaks are the waves of the reactivation campaign (the offer on a Monday, "
        "its reminder five days later, then the last-call SMS): each Monday it selects whoever has "
        "gone quiet, not contacted in the last two weeks.</p>",
        timeline_chart(results.sends_per_day, start=results.start, days=results.days),
    ]


def _spiral(results: Results) -> list[str]:
    journey = results.journey
    if journey is None:
        return ['<h2 id="spiral">The golden spiral</h2>', "<p>No lead finished a nurture step yet.</p>"]
    return [
        '<h2 id="spiral">The golden spiral of one lead</h2>',
        f"<p>{escape(journey.lead)} in <code>{escape(journey.sequence)}</code>, enrolled "
        f"{journey.enrolled_at.astimezone(PARIS):%a %d %b %H:%M} (Paris). Many touches at the start, "
        "then each gap grows by the golden ratio (φ ≈ 1.618). Here each gap between two messages "
        "is a quarter turn drawn at its length: on the dashed golden spiral each quarter turn is φ "
        "times the previous one, and a gap that a send window or the frequency cap stretched "
        "stands off it.</p>",
        '<div class="row">',
        spiral_chart(journey),
        table(journey_rows(journey)),
        "</div>",
    ]


def _ab(results: Results) -> list[str]:
    review = results.review
    if review is None:
        return ['<h2 id="ab">A/B review</h2>', "<p>The reactivation campaign has not sent anything yet.</p>"]
    noun = METRIC_NOUNS[review.metric]
    return [
        f'<h2 id="ab">A/B review: {escape(review.experiment.name)}</h2>',
        "<p>Two offers against a holdout that receives nothing, so the lift is measured against doing "
        f"nothing. {escape(review.headline())}.</p>",
        f'<p class="advice"><strong>Verdict:</strong> {escape(review.stats.recommendation)}</p>',
        rate_chart(review.stats, metric=review.metric),
        f'<p class="meta">Dot: {escape(noun)} rate; bar: its 95% interval; dashed line: the holdout.</p>',
        table([{key: row[key] for key in AB_COLUMNS if key in row} for row in review.table_rows()]),
    ]


def _rules(results: Results) -> list[str]:
    deferred = [
        {"deferred because": k.replace("_", " "), "times": f"{n:,}"}
        for k, n in results.deferred.most_common()
    ]
    suppressed = [
        {"channel": channel, "suppressed because": reason, "addresses": f"{n:,}"}
        for (channel, reason), n in results.suppressions.most_common()
    ]
    messages = [
        {"channel": channel, **{state: f"{n:,}" for state, n in sorted(states.items())}}
        for channel, states in sorted(results.messages.items())
    ]
    outcomes = [{"sales attempt": k, "logged": f"{n:,}"} for k, n in results.outcomes.most_common()]
    return [
        '<h2 id="rules">Messages and the sending rules at work</h2>',
        '<div class="row">',
        table(_aligned(messages)) if messages else "",
        table(deferred) if deferred else "<p>Nothing deferred.</p>",
        table(suppressed) if suppressed else "<p>No suppression.</p>",
        table(outcomes) if outcomes else "",
        "</div>",
    ]


def _outbox(results: Results, directory: Path) -> list[str]:
    outbox = results.outbox_dir
    link = Path(os.path.relpath(outbox, directory.resolve())).as_posix()
    items = [
        f'<li><a href="{escape(link)}/email/{escape(file)}">{escape(subject)}</a> '
        f'<span class="meta">({escape(where)})</span></li>'
        for where, subject, file in results.samples
    ]
    return [
        '<h2 id="outbox">The outbox</h2>',
        f'<p>Every email is an <code>.eml</code> file in <a href="{escape(link)}/email/">'
        f"{escape(str(outbox / 'email'))}</a> (open one in any mail client); every SMS is a line of "
        f'<a href="{escape(link)}/sms.jsonl">sms.jsonl</a> with its encoding and segment count. '
        "The first email of each step:</p>",
        "<ul>",
        *items,
        "</ul>",
    ]


def _aligned(rows: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    keys: list[str] = []
    for row in rows:
        keys += [key for key in row if key not in keys]
    return [{key: row.get(key, "0") for key in keys} for row in rows]


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table of ``rows`` (numbers right-aligned)."""
    if not rows:
        return ""
    header = "".join(f"<th>{escape(str(key))}</th>" for key in rows[0])
    body = "".join("<tr>" + "".join(_cell(value) for value in row.values()) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    text = str(value)
    numeric = text[:1].isdigit() or text[:1] in "+-—"
    return f'<td class="n">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"
