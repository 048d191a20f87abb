"""Rendering: the context contract, escaping per channel, StrictUndefined, and the hardened sandbox."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sequences.rendering import (
    SAMPLE_LEAD,
    SAMPLE_UNSUBSCRIBE_URL,
    RenderedMessage,
    Renderer,
    compile_condition,
    evaluate_condition,
    html_to_text,
    sample_context,
)
from sequences.schema import Sequence
from spirale.errors import RenderError

SEQUENCE = Sequence.model_validate(
    {
        "name": "nurture",
        "steps": [
            {
                "id": "welcome",
                "channel": "email",
                "template": "welcome",
                "subject": "Bonjour {{ lead.first_name }}",
            },
            {"id": "guide", "channel": "email", "template": "html-only", "subject": "Guide"},
            {"id": "check-in", "channel": "sms", "text": "{{ lead.first_name }} & co <3 STOP au 36180"},
            {"id": "reminder", "channel": "sms", "template": "reminder"},
            {"id": "call", "channel": "call", "note": "Appeler {{ lead.first_name }} au {{ lead.phone }}"},
            {"id": "visit", "channel": "linkedin"},
            {
                "id": "offer",
                "channel": "email",
                "template": "welcome",
                "subject": "Offre",
                "variants": [
                    {"id": "remise", "weight": 45, "template": "offer", "subject": "-20% {{ variant }}"},
                    {"id": "audit", "weight": 45},
                ],
                "holdout": 10,
            },
        ],
    }
)
STEPS = {step.id: step for step in SEQUENCE.steps}


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    files = {
        "welcome.html.j2": "<p>Bonjour {{ lead.first_name }}</p><a href='{{ unsubscribe_url }}'>stop</a>\n",
        "welcome.txt.j2": "Bonjour {{ lead.first_name }}\n{{ unsubscribe_url }}\n",
        "html-only.html.j2": "<h1>Guide &amp; conseils</h1><p>Pour {{ lead.company }}<br>{{ sender.name }}",
        "reminder.txt.j2": "{{ sender.name }}: rappel pour {{ lead.first_name }}. STOP au 36180",
        "offer.html.j2": "<p>{{ step.id }}/{{ variant }}/{{ sequence.name }}</p>",
        "offer.txt.j2": "{{ step.channel }} {{ variant }}",
        "typo.html.j2": "<p>Bonjour</p>\n<p>{{ lead.frist_name }}</p>\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


@pytest.fixture
def renderer(templates: Path) -> Renderer:
    return Renderer(templates)


def _render(renderer: Renderer, step_id: str, variant: str | None = None, **lead: Any) -> RenderedMessage:
    step = STEPS[step_id]
    context = sample_context(SEQUENCE, step, variant, {**SAMPLE_LEAD, **lead})
    return renderer.render_step(SEQUENCE, step, variant, context)


def test_sample_lead_is_the_documented_french_lead() -> None:
    assert SAMPLE_LEAD["first_name"] == "Camille" and SAMPLE_LEAD["last_name"] == "Martin"
    assert SAMPLE_LEAD["email"] == "camille.martin@example.fr" and SAMPLE_LEAD["phone"] == "+33612345678"
    assert SAMPLE_LEAD["consent"] == {"email": True, "sms": True}
    with pytest.raises(TypeError):
        SAMPLE_LEAD["first_name"] = "x"  # type: ignore[index]


def test_sample_context_holds_exactly_the_contract() -> None:
    context = sample_context(SEQUENCE, STEPS["welcome"], None)
    assert sorted(context) == ["lead", "sender", "sequence", "step", "unsubscribe_url", "variant"]
    assert type(context["lead"]) is dict and type(context["lead"]["consent"]) is dict
    assert context["step"] == {"id": "welcome", "channel": "email"}
    assert context["sequence"] == {"name": "nurture"}
    assert context["unsubscribe_url"] == SAMPLE_UNSUBSCRIBE_URL


def test_email_renders_subject_html_and_text(renderer: Renderer) -> None:
    message = _render(renderer, "welcome")
    assert message.subject == "Bonjour Camille"
    assert message.html == f"<p>Bonjour Camille</p><a href='{SAMPLE_UNSUBSCRIBE_URL}'>stop</a>\n"
    assert message.text == f"Bonjour Camille\n{SAMPLE_UNSUBSCRIBE_URL}\n"


def test_html_is_autoescaped_and_sms_and_subject_are_not(renderer: Renderer) -> None:
    hostile = "<script>alert(1)</script>"
    email = _render(renderer, "welcome", first_name=hostile)
    assert email.html is not None and "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<script>" not in email.html
    assert email.subject == f"Bonjour {hostile}"
    assert email.text is not None and email.text.startswith(f"Bonjour {hostile}")
    sms = _render(renderer, "check-in", first_name="Léa & Zoé")
    assert sms == RenderedMessage(None, None, "Léa & Zoé & co <3 STOP au 36180")


def test_text_is_derived_from_html_without_a_txt_template(renderer: Renderer) -> None:
    assert _render(renderer, "guide").text == "Guide & conseils\nPour Atelier Martin\nSpirale\n"


def test_html_to_text_drops_styles_and_keeps_paragraphs() -> None:
    markup = "<style>p {color: red}</style><p>Un</p>\n\n\n<p>Deux &eacute;<br/>trois</p>"
    assert html_to_text(markup) == "Un\n\nDeux é\ntrois\n"


def test_html_to_text_keeps_web_links() -> None:
    markup = (
        '<p><a href="https://x.example/u/t?a=1&amp;b=2" style="c">Se <b>désinscrire</b></a> '
        "<a href='https://x.example/'>https://x.example/</a> <a href=\"mailto:a@b.fr\">écrire</a></p>"
    )
    assert (
        html_to_text(markup) == "Se désinscrire (https://x.example/u/t?a=1&b=2) https://x.example/ écrire\n"
    )


def test_sms_from_a_template_and_manual_notes(renderer: Renderer) -> None:
    assert _render(renderer, "reminder").text == "Spirale: rappel pour Camille. STOP au 36180"
    assert _render(renderer, "call") == RenderedMessage(None, None, "Appeler Camille au +33612345678")
    assert _render(renderer, "visit") == RenderedMessage(None, None, None)


def test_a_variant_overrides_template_and_subject(renderer: Renderer) -> None:
    remise = _render(renderer, "offer", "remise")
    assert (remise.subject, remise.html, remise.text) == (
        "-20% remise",
        "<p>offer/remise/nurture</p>",
        "email remise",
    )
    audit = _render(renderer, "offer", "audit")  # no override: the step's own content
    assert audit.subject == "Offre" and audit.html is not None and audit.html.startswith("<p>Bonjour")


def test_undefined_variables_fail_with_template_line_and_name(renderer: Renderer) -> None:
    with pytest.raises(RenderError) as raised:
        renderer.render_template("typo.html.j2", sample_context(SEQUENCE, STEPS["welcome"], None))
    assert str(raised.value) == "template 'typo.html.j2', line 2: undefined variable 'lead.frist_name'"
    context = sample_context(SEQUENCE, STEPS["welcome"], None)
    with pytest.raises(RenderError, match=r"^subject, line 1: undefined variable 'lead\.nope'$"):
        renderer.render_string("{{ lead.nope }}", context, "subject")
    with pytest.raises(RenderError, match=r"undefined variable 'customer'"):
        renderer.render_string("{{ customer }}", context)


def test_jinja_errors_become_render_errors(renderer: Renderer) -> None:
    with pytest.raises(RenderError, match=r"^template 'nope.html.j2' not found in "):
        renderer.render_template("nope.html.j2", {})
    with pytest.raises(RenderError, match=r"^inline template, line 1: syntax error: "):
        renderer.render_string("{% if %}", {})
    with pytest.raises(RenderError, match=r"includes a template that does not exist: 'missing.j2'"):
        renderer.render_string("{% include 'missing.j2' %}", {})
    with pytest.raises(RenderError, match=r"line 2: ZeroDivisionError"):
        renderer.render_string("ok\n{{ 1 / 0 }}", {})


def test_templates_are_cached(renderer: Renderer, templates: Path) -> None:
    context = sample_context(SEQUENCE, STEPS["welcome"], None)
    first = renderer.render_template("welcome.txt.j2", context)
    (templates / "welcome.txt.j2").write_text("changed", encoding="utf-8")
    assert renderer.render_template("welcome.txt.j2", context) == first


# --- the sandbox ---------------------------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__subclasses__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__['os'] }}",
    "{{ '{0.__class__}'.format(lead) }}",
    "{{ '{0.__class__.__base__}'.format_map({'0': 1}) }}",
    "{{ lead|attr('__class__') }}",
    "{{ (lead|attr('__class__')).__mro__ }}",
    "{{ lead['__class__'] }}",
    "{{ self.__init__.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ lead.items.__self__.__class__ }}",
    "{{ range(10**9)|list|length }}",
    "{% for i in range(10**6) %}{% endfor %}",
    "{{ 'a' * 10**9 }}",
    "{{ ['a'] * 10**9 }}",
    "{{ 2 ** 1000000 }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '%*d' % (10**9, 1) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '{:{w}}'.format(1, w=10**9) }}",
    "{{ '%0999999999d'|format(1) }}",
    "{{ 'a'|center(10**9) }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ 'a\\nb'|indent(10**8, true) }}",
    "{{ ('a' * 200000)|replace('', 'bbbbbbbbbb') }}",
    "{{ ('a' * 200000).replace('a', 'bbbbbbbbbb') }}",
    "{{ 'x'|batch(10**9, 'y')|list }}",
    "{{ range(10000)|map('string')|map('replace', '0', 'x' * 200000)|join }}",
    "{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}",
    "{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x %}{{ ns.x }}{{ ns.x }}{% endset %}"
    "{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{% set l = [] %}{{ l.append(1) }}",
    "{{ lipsum(10**6) }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_and_bombs_are_render_errors(templates: Path, source: str) -> None:
    renderer = Renderer(templates, max_seconds=0.2)
    started = time.perf_counter()
    with pytest.raises(RenderError):
        renderer.render_string(source, sample_context(SEQUENCE, STEPS["welcome"], None))
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("source", ["{{ lead.__class__ }}", "{% if false %}{{ ''.__class__ }}{% endif %}"])
def test_unsafe_constructs_are_found_statically(renderer: Renderer, source: str) -> None:
    assert renderer.unsafe_constructs(source, "t") == [(1, "access to private attribute '__class__'")]


def test_ordinary_templates_stay_within_limits(renderer: Renderer) -> None:
    source = (
        "{% for i in range(100) %}{{ lead.first_name|upper }}-{{ '%03d' % i }}-{{ '{:>5}'.format(i) }}"
        "{{ ('ab' ~ i) * 2 }}{{ lead.company|replace('Atelier', 'Maison')|center(30) }}{% endfor %}"
        "{{ range(3)|join(',') }} {{ lead.items()|list|length }}"
    )
    out = renderer.render_string(source, sample_context(SEQUENCE, STEPS["welcome"], None))
    assert out.startswith("CAMILLE-000-    0ab0ab0") and out.endswith("0,1,2 11")


def test_output_over_the_limit_is_refused(templates: Path) -> None:
    renderer = Renderer(templates, max_output=1000)
    assert len(renderer.render_string("{{ 'x' * 1000 }}", {})) == 1000
    with pytest.raises(RenderError, match="output is larger than 1000 characters"):
        renderer.render_string("{{ 'x' * 1000 }}!", {})


# --- conditions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "lead", "expected"),
    [
        ("lead.phone and lead.consent.sms", SAMPLE_LEAD, True),
        ("lead.phone and lead.consent.sms", {**SAMPLE_LEAD, "phone": ""}, False),
        ("lead.consent.sms", {**SAMPLE_LEAD, "consent": {"email": True, "sms": False}}, False),
        ("lead.country == 'FR' and lead.status in ['warm', 'hot']", SAMPLE_LEAD, True),
        ("lead.job_title is string and 'marketing' in lead.job_title|lower", SAMPLE_LEAD, True),
    ],
)
def test_conditions(expression: str, lead: dict[str, Any], expected: bool) -> None:
    assert evaluate_condition(expression, lead) is expected
    compile_condition(expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("lead.phone and", "condition 'lead.phone and': syntax error: unexpected end of the expression"),
        (
            "lead.phone }} {{ 1",
            "condition 'lead.phone }} {{ 1': syntax error: unexpected text after the expression",
        ),
        (
            "lead.__class__",
            "condition 'lead.__class__': unsafe construct: access to private attribute '__class__'",
        ),
    ],
)
def test_conditions_that_do_not_compile(expression: str, message: str) -> None:
    with pytest.raises(RenderError) as raised:
        compile_condition(expression)
    assert str(raised.value) == message


def test_condition_on_an_undefined_field_is_an_error() -> None:
    with pytest.raises(RenderError) as raised:
        evaluate_condition("lead.phnoe", SAMPLE_LEAD)
    assert str(raised.value) == "condition 'lead.phnoe': undefined variable 'lead.phnoe'"


def test_condition_is_bounded_too() -> None:
    with pytest.raises(RenderError, match="too large"):
        evaluate_condition("range(10**9)|list", SAMPLE_LEAD)
