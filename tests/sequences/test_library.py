"""The shipped sequence library: every file validates clean, and its messages meet the legal minimum
(sender named, unsubscribe link, STOP mention) for a fully known lead and for a bare form lead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import sequences
from channels.sms_length import sms_length
from sequences.loader import load_library
from sequences.rendering import Renderer
from sequences.schema import Channel, Sequence, Step
from sequences.validate import validate_paths

SEQUENCES_DIR = Path(sequences.__file__).parent
LIBRARY = SEQUENCES_DIR / "library"
TEMPLATES = SEQUENCES_DIR / "templates"
SHIPPED = ("whitepaper-nurture", "incubator", "sales-cadence", "reactivation-offer", "customer-care")
SENDER = {"name": "Atelier Spirale Conseil", "email": "bonjour@atelier-spirale.fr"}
UNSUBSCRIBE_URL = "https://atelier-spirale.fr/u/3f9c2a?s=1&t=abc"

FULL_LEAD: dict[str, Any] = {
    "first_name": "Marie-Christine",
    "last_name": "Durand-Lefebvre",
    "email": "marie-christine.durand@boulangeries-durand.fr",
    "phone": "+33612345678",
    "company": "Boulangeries Durand & Fils",
    "job_title": "Gérante",
    "country": "FR",
    "timezone": "Europe/Paris",
    "status": "warm",
    "owner": "julie.martin",
    "consent": {"email": True, "sms": True},
}
# A lead from a bare web form: every optional field is an empty string, no SMS consent.
BARE_LEAD: dict[str, Any] = {
    **{key: "" for key in FULL_LEAD},
    "email": "contact@example.fr",
    "consent": {"email": True, "sms": False},
}
LEADS = pytest.mark.parametrize("lead", [FULL_LEAD, BARE_LEAD], ids=["full-lead", "bare-lead"])

LIBRARY_FILES = sorted(LIBRARY.glob("*.yaml"))
SEQUENCES = load_library(SEQUENCES_DIR)
RENDERER = Renderer(TEMPLATES)

Arm = tuple[Sequence, Step, str | None]


def _arms(channel: Channel) -> list[Arm]:
    """Every (sequence, step, variant id) a lead can receive on this channel."""
    return [
        (sequence, step, variant.id if variant else None)
        for sequence in SEQUENCES.values()
        for step in sequence.steps
        if step.channel is channel
        for variant in (step.variants or (None,))
    ]


def _render(arm: Arm, lead: dict[str, Any]) -> Any:
    sequence, step, variant = arm
    context = {
        "lead": lead,
        "sender": SENDER,
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "sequence": {"name": sequence.name},
        "step": {"id": step.id, "channel": step.channel.value},
        "variant": variant,
    }
    return RENDERER.render_step(sequence, step, variant, context)


def _email_templates() -> set[str]:
    templates = set()
    for _, step, variant in _arms(Channel.EMAIL):
        arm = step.arm(variant)
        template = (arm.template if arm else None) or step.template
        assert template is not None
        templates.add(template)
    return templates


def test_the_library_validates_without_errors_or_warnings() -> None:
    assert [str(d) for d in validate_paths([], SEQUENCES_DIR)] == []


def test_the_five_shipped_sequences_are_in_the_library() -> None:
    assert set(SHIPPED) <= set(SEQUENCES)
    assert len(SEQUENCES) == len(LIBRARY_FILES)


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.stem)
def test_a_sequence_is_named_after_its_file(path: Path) -> None:
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["name"] == path.stem


def test_the_sales_cadence_makes_seven_attempts_in_order() -> None:
    channels = [step.channel.value for step in SEQUENCES["sales-cadence"].steps]
    assert channels == ["call", "email", "linkedin", "call", "sms", "email", "call"]


def test_sales_cadence_calls_keep_to_phone_prospecting_hours_and_carry_notes() -> None:
    cadence = SEQUENCES["sales-cadence"]
    assert cadence.window_for(Channel.CALL).profile == "fr-phone-prospecting"
    manual = [step for step in cadence.steps if step.channel.is_manual]
    assert len(manual) == 4
    assert all(step.note and len(step.note) > 80 for step in manual)


def test_variants_and_holdout_sum_to_one_hundred() -> None:
    tested = [step for sequence in SEQUENCES.values() for step in sequence.steps if step.variants]
    assert len(tested) >= 4
    for step in tested:
        assert sum(v.weight for v in step.variants) + step.holdout == pytest.approx(100)
        assert step.holdout > 0, f"{step.id}: an A/B test without a holdout cannot measure the lift"


def test_reactivation_follow_ups_repeat_the_arms_of_the_offer() -> None:
    steps = SEQUENCES["reactivation-offer"].steps
    arms = {
        step.id: [(v.id, v.weight) for v in step.variants] + [("holdout", step.holdout)] for step in steps
    }
    assert {v for v, _ in arms["offer"]} == {"remise", "audit-offert", "holdout"}
    assert all(step_arms == arms["offer"] for step_arms in arms.values())


def test_customer_classes_are_contacted_monthly_quarterly_and_twice_a_year() -> None:
    months = {}
    for name in ("customer-care", "customer-care-b", "customer-care-c"):
        repeat = SEQUENCES[name].repeat
        assert repeat is not None, name
        months[name] = repeat.every.months
    assert months == {"customer-care": 1, "customer-care-b": 3, "customer-care-c": 6}


@pytest.mark.parametrize("template", sorted(_email_templates()))
def test_every_email_template_names_the_sender_and_links_to_unsubscribe(template: str) -> None:
    for suffix in (".html.j2", ".txt.j2"):
        source = (TEMPLATES / f"{template}{suffix}").read_text(encoding="utf-8")
        assert "{{ unsubscribe_url }}" in source, f"{template}{suffix}"
        assert "{{ sender.name }}" in source, f"{template}{suffix}"


def test_every_template_file_is_used_by_a_sequence() -> None:
    on_disk = {path.name.removesuffix(".html.j2").removesuffix(".txt.j2") for path in TEMPLATES.glob("*.j2")}
    assert on_disk == _email_templates()


@LEADS
def test_every_email_renders_for_any_lead(lead: dict[str, Any]) -> None:
    for arm in _arms(Channel.EMAIL):
        message = _render(arm, lead)
        where = f"{arm[0].name}/{arm[1].id}/{arm[2]}"
        assert message.subject and message.subject.strip() and "None" not in message.subject, where
        # The HTML part is autoescaped: the query string of the link comes out as &amp;.
        assert "s=1&amp;t=abc" in message.html and SENDER["name"] in message.html, where
        assert UNSUBSCRIBE_URL in message.text and SENDER["name"] in message.text, where
        for body in (message.html, message.text):
            assert "None" not in body and "{{" not in body and "{%" not in body, where


def test_the_html_part_escapes_lead_data() -> None:
    arm = (SEQUENCES["whitepaper-nurture"], SEQUENCES["whitepaper-nurture"].steps[0], None)
    message = _render(arm, {**FULL_LEAD, "first_name": "<script>x</script>"})
    assert "<script>" not in message.html and "&lt;script&gt;" in message.html


def test_every_sms_names_the_sender_and_offers_stop() -> None:
    arms = _arms(Channel.SMS)
    assert len(arms) >= 5
    for arm in arms:
        text = _render(arm, FULL_LEAD).text
        assert text.startswith(SENDER["name"]) and "STOP au 36180" in text, text


@LEADS
def test_every_sms_fits_one_gsm7_segment(lead: dict[str, Any]) -> None:
    for arm in _arms(Channel.SMS):
        length = sms_length(_render(arm, lead).text)
        assert (length.encoding, length.segments) == ("GSM-7", 1), f"{arm[0].name}/{arm[1].id}: {length}"


def test_sms_steps_only_reach_leads_who_opted_in() -> None:
    for sequence, step, _ in _arms(Channel.SMS):
        assert step.if_ is not None, f"{sequence.name}/{step.id}"
        assert RENDERER.evaluate_condition(step.if_, FULL_LEAD)
        assert not RENDERER.evaluate_condition(
            step.if_, {**FULL_LEAD, "consent": {"email": True, "sms": False}}
        )
        assert not RENDERER.evaluate_condition(step.if_, {**FULL_LEAD, "phone": ""})


def test_every_form_starts_a_shipped_sequence() -> None:
    forms = yaml.safe_load((SEQUENCES_DIR / "forms.yaml").read_text(encoding="utf-8"))["forms"]
    assert {"livre-blanc", "checklist-rgpd", "webinar"} <= set(forms)
    for form_id, form in forms.items():
        assert form["sequence"] in SEQUENCES, form_id
        assert set(form) <= {"sequence", "description", "source"}, form_id
