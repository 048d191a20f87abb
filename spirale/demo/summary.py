"""The summary printed at the end of ``spirale demo``: what a newcomer needs to understand the
product from one screen, and where to look next."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from spirale.demo.results import Results

BAR = 36
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
    for column, justify in (("stage", "left"), ("leads", "right"), ("", "left"), ("", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    top = max(results.funnel[0][1], 1)
    previous = None
    for stage, count in results.funnel:
        bar = "█" * max(1, round(BAR * count / top)) if count else ""
        share = f" {count / previous:.0%} of the previous" if previous else ""
        table.add_row(stage, f"{count:,}", f"[cyan]{bar}[/]{share}", STAGE_HELP[stage])
        previous = count
    off = ", ".join(f"{RULE_NAMES.get(k, k)} {n:,}" for k, n in results.off_target.most_common())
    table.caption = f"Off-target downloads screened out by the intake: {off or 'none'}"
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
    tasks = ", ".join(f"{kind} {n:,}" for kind, n in results.tasks.most_common())
    outcomes = ", ".join(f"{name} {n:,}" for name, n in results.outcomes.most_common())
    table.caption = (
        f"Sales tasks: {tasks or 'none'}. Attempts logged: {outcomes or 'none'}. "
        f"Owners alerted of hot leads: {results.notifications:,}. "
        f"Sales recorded: {results.conversions:,} ({results.revenue:,.0f} €)."
    )
    return table


def _policy(results: Results) -> Panel:
    deferred = ", ".join(f"{reason.replace('_', ' ')} {n:,}" for reason, n in results.deferred.most_common())
    blocked = ", ".join(f"{channel} {n:,}" for channel, n in results.blocked.most_common())
    by_reason: Counter[str] = Counter()
    for (channel, reason), n in results.suppressions.items():
        by_reason[f"{channel} {reason}"] += n
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
    prefect = results.extra.get("prefect_command")
    lines = [
        f"[bold]report[/]    {report / 'index.html'}  (open it in a browser; works offline)",
        f"[bold]outbox[/]    {outbox / 'email'}/*.eml (any mail client), {outbox / 'sms.jsonl'}",
        "[bold]preview[/]   spirale preview whitepaper-nurture --out var/preview/whitepaper-nurture",
        f"[bold]plan[/]      SPIRALE_DATABASE_URL={results.extra.get('database_url')} "
        "spirale plan export --out var/plan.xlsx",
        "[bold]go live[/]   spirale serve  (the API and every flow on its schedule; UI: spirale server)",
    ]
    if prefect:
        lines.append(f"[bold]runs[/]      {prefect}  then http://127.0.0.1:4200")
    return Panel("\n".join(lines), title="Where to look next", title_align="left")
