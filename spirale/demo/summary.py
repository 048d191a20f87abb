"""The summary printed at the end of ``spirale demo``: what a newcomer needs to understand the
product from one screen, and where to look next."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from spirale.demo.results import Results

STAGE_HELP = {
    "downloads": "forms filled in (white paper, checklist, webinar, newsletter, call-back)",
    "qualified": "real leads by sales' definition (scoring.yaml)",
    "warm": "nurtured automatically (email, SMS)",
    "hot": "handed to a salesperson at once",
    "meetings": "booked during the 7 attempts",
    "customers": "bought",
}
RULE_NAMES = {
    "academic": "students",
    "competitors": "competitors",
    "countries": "foreigners",
    "disposable": "throw-away addresses",
    "job_titles": "consultants, interns...",
    "invalid_email": "invalid addresses",
}


def print_summary(console: Console, results: Results, *, report: Path, elapsed: timedelta) -> None:
    """The funnel, messages, deferrals, suppressions, the A/B verdict and where to look next."""
    end = results.start + timedelta(days=results.days - 1)
    console.rule(
        f"[bold]{results.days} simulated days[/] ({results.start:%a %d %b} – {end:%a %d %b %Y}), "
        f"{results.people:,} leads, in {elapsed.total_seconds():.0f} s"
    )
    console.print(funnel_table(results))
    console.print(messages_table(results))
    console.print(_policy(results))
    console.print(_verdict(results))
    console.print(_next(results, report))


def funnel_table(results: Results) -> Table:
    table = Table(title="The funnel of the people who downloaded something", title_justify="left")
    table.add_column("stage")
    table.add_column("leads", justify="right")
    table.add_column("kept", justify="right")
    table.add_column("meaning", overflow="fold")
    previous = None
    for stage, count in results.funnel:
        share = f"{count / previous:.0%}" if previous else ""
        table.add_row(stage, f"{count:,}", share, STAGE_HELP[stage])
        previous = count
    off = ", ".join(f"{RULE_NAMES.get(k, k)} {n:,}" for k, n in results.off_target.most_common())
    refused = sum(results.form_errors.values())
    table.caption = f"Off-target downloads screened out by the intake: {off or 'none'}" + (
        f". Forms refused by the API (invalid field): {refused:,}" if refused else ""
    )
    table.caption_justify = "left"
    return table


def messages_table(results: Results) -> Table:
    table = Table(title="Messages", title_justify="left")
    for column in ("channel", "sent", "blocked by a suppression", "failed", "other"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    for channel, states in sorted(results.messages.items()):
        other = sum(n for state, n in states.items() if state not in ("sent", "suppressed", "failed"))
        table.add_row(
            channel, f"{states['sent']:,}", f"{states['suppressed']:,}", f"{states['failed']:,}", f"{other:,}"
        )
    tasks = ", ".join(f"{kind} {n:,}" for kind, n in sorted(results.tasks.items()))
    outcomes = ", ".join(f"{name} {n:,}" for name, n in results.outcomes.most_common())
    table.caption = (
        f"Tasks on the owners' lists: {tasks or 'none'}. Sales attempts logged: {outcomes or 'none'}. "
        f"Owner alerts of hot leads: {results.notifications:,}. "
        f"Sales recorded: {results.conversions:,} ({results.revenue:,.0f} €)."
    )
    if results.refused_calls:
        table.caption += f" Calls refused by the legal limit (4 per 30 days): {results.refused_calls:,}."
    table.caption_justify = "left"
    return table


def _policy(results: Results) -> Panel:
    deferred = ", ".join(f"{reason.replace('_', ' ')} {n:,}" for reason, n in results.deferred.most_common())
    blocked = ", ".join(f"{channel} {n:,}" for channel, n in results.blocked.most_common())
    by_reason: Counter[str] = Counter()
    for (channel, reason), n in results.suppressions.items():
        by_reason[reason if reason.startswith(channel) else f"{channel} {reason}"] += n
    suppressions = ", ".join(f"{key} {n:,}" for key, n in by_reason.most_common())
    lines = [
        f"[bold]Deferred[/] (held for the next allowed slot, never dropped): {deferred or 'none'}",
        f"[bold]Suppressions[/] (never contacted again on that channel): {suppressions or 'none'}",
        f"[bold]Sends blocked[/] at send time by a suppression: {blocked or 'none'}",
    ]
    return Panel("\n".join(lines), title="Sending rules at work", title_align="left")


def _verdict(results: Results) -> Panel:
    review = results.review
    if review is None:
        return Panel("No A/B review: the reactivation campaign sent nothing yet.", title="A/B review")
    arms = Text()
    for arm in review.stats.arms:
        low, high = arm.ci
        arms.append(f"  {arm.id:<14} {arm.conversions:>4} / {arm.n:<5} {arm.rate:6.1%}", style="bold")
        arms.append(f"   95% CI {low:.1%} – {high:.1%}\n")
    body = Group(
        Text(f"{review.experiment.name}: {review.metric} within {review.window.days} days of the send"),
        arms,
        Text(f"Verdict: {review.stats.recommendation}", style="bold green"),
        Text(f"Sample guard: {review.stats.guard.message}."),
    )
    return Panel(body, title="A/B review of the reactivation campaign", title_align="left")


def _next(results: Results, report: Path) -> Panel:
    outbox = results.outbox_dir
    spirale = spirale_command()
    after = results.start + timedelta(days=results.days)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("report", f"{report / 'index.html'} (open it in a browser; it works offline)")
    grid.add_row("outbox", f"{outbox / 'email'}/*.eml (any mail client) and {outbox / 'sms.jsonl'}")
    grid.add_row("preview", f"{spirale} preview whitepaper-nurture --out var/preview/whitepaper-nurture")
    grid.add_row(
        "plan",
        f"SPIRALE_DATABASE_URL={results.extra.get('database_url')} {spirale} plan export "
        f"--start {after.isoformat()} --out var/plan.xlsx",
    )
    grid.add_row(
        "go live", f"{spirale} serve: the API and every flow on its schedule (Prefect UI: {spirale} server)"
    )
    prefect = results.extra.get("prefect_database")
    if prefect:
        grid.add_row(
            "flow runs",
            f"PREFECT_SERVER_DATABASE_CONNECTION_URL={prefect} {spirale} server, then http://127.0.0.1:4200",
        )
    return Panel(grid, title="Where to look next", title_align="left")


def spirale_command() -> str:
    """How to call ``spirale`` from here: the virtualenv's script when it is not on the PATH."""
    script = Path(sys.executable).parent / "spirale"
    if not script.exists() or shutil.which("spirale") == str(script):
        return "spirale"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)
