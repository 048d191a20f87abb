"""The local outbox: real .eml files and an SMS JSON-lines log."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage as ParsedEmail
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.base import EmailMessage, SendResult, SmsMessage
from channels.local_outbox import LocalOutboxEmail, LocalOutboxSms, render_eml
from channels.unsubscribe import list_unsubscribe_headers
from spirale.errors import PermanentSendError, UnknownOutcomeError

NOW = datetime(2026, 12, 7, 8, 30, tzinfo=UTC)
UNSUBSCRIBE = list_unsubscribe_headers(
    "https://spirale.example/unsubscribe/ZW1haWw6bGVhZC00Mg.c2lnbmF0dXJl", "unsubscribe@spirale.example"
)


def email(outbox_id: str = "8c1f6a4e-0001", **overrides: Any) -> EmailMessage:
    fields: dict[str, Any] = {
        "outbox_id": outbox_id,
        "to": "jeanne.dupont@example.fr",
        "subject": "Votre livre blanc « Spirale » : 7 tentatives avant d'abandonner",
        "html": "<p>Bonjour Jeanne,</p><p>Voici le guide, avec ç, é et €.</p>",
        "text": "Bonjour Jeanne,\n\nVoici le guide, avec ç, é et €.\n",
        "from_email": "marketing@spirale.example",
        "from_name": "Équipe Spirale",
        "headers": UNSUBSCRIBE,
        "categories": ("whitepaper-nurture", "whitepaper-nurture/welcome"),
        "custom_args": {"lead_id": "lead-42"},
    }
    fields.update(overrides)
    return EmailMessage(**fields)


def parse(path: Path) -> ParsedEmail:
    parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(parsed, ParsedEmail)
    return parsed


def all_defects(message: ParsedEmail) -> list[object]:
    return [defect for part in message.walk() for defect in part.defects]


@pytest.fixture
def outbox(tmp_path: Path) -> LocalOutboxEmail:
    return LocalOutboxEmail(tmp_path, clock=lambda: NOW)


def test_email_is_a_real_eml_with_both_parts_and_one_click_unsubscribe(outbox: LocalOutboxEmail) -> None:
    result = outbox.send(email())

    path = outbox.email_dir / "8c1f6a4e-0001.eml"
    parsed = parse(path)
    assert all_defects(parsed) == []
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["From"].addresses[0].display_name == "Équipe Spirale"
    assert parsed["From"].addresses[0].addr_spec == "marketing@spirale.example"
    assert parsed["To"] == "jeanne.dupont@example.fr"
    assert parsed["Subject"] == "Votre livre blanc « Spirale » : 7 tentatives avant d'abandonner"
    assert parsedate_to_datetime(parsed["Date"]) == NOW
    assert parsed["Message-ID"] == "<8c1f6a4e-0001@spirale.example>"
    assert parsed["List-Unsubscribe"] == UNSUBSCRIBE["List-Unsubscribe"]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["X-Spirale-Outbox-Id"] == "8c1f6a4e-0001"
    assert parsed["X-Spirale-Categories"] == "whitepaper-nurture, whitepaper-nurture/welcome"
    assert json.loads(parsed["X-Spirale-Custom-Args"]) == {"lead_id": "lead-42", "outbox_id": "8c1f6a4e-0001"}
    text_part, html_part = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert text_part is not None and html_part is not None
    assert text_part.get_content() == "Bonjour Jeanne,\n\nVoici le guide, avec ç, é et €.\n"
    assert html_part.get_content() == "<p>Bonjour Jeanne,</p><p>Voici le guide, avec ç, é et €.</p>"
    assert result.provider_message_id == "local-8c1f6a4e-0001"


def test_writing_the_same_outbox_id_twice_keeps_one_message(outbox: LocalOutboxEmail) -> None:
    first = outbox.send(email(subject="Premier"))
    second = outbox.send(email(subject="Second"))

    files = sorted(p.name for p in outbox.email_dir.iterdir())
    assert files == ["8c1f6a4e-0001.eml"]
    assert parse(outbox.email_dir / files[0])["Subject"] == "Premier"
    assert first == second


def test_concurrent_writers_of_one_outbox_id_publish_one_file(outbox: LocalOutboxEmail) -> None:
    barrier = threading.Barrier(8)

    def write(index: int) -> None:
        barrier.wait()
        outbox.send(email(subject=f"copie {index}"))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [p.name for p in outbox.email_dir.iterdir()] == ["8c1f6a4e-0001.eml"]
    assert parse(outbox.email_dir / "8c1f6a4e-0001.eml")["Subject"].startswith("copie ")


def test_batches_leave_no_temporary_files(outbox: LocalOutboxEmail) -> None:
    outcomes = outbox.send_many([email(f"ob-{i}") for i in range(50)])

    assert all(o.ok for o in outcomes)
    names = [p.name for p in outbox.email_dir.iterdir()]
    assert len(names) == 50
    assert all(name.endswith(".eml") and not name.startswith(".") for name in names)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"subject": "Bonjour\r\nBcc: everyone@example.fr"}, "line break"),
        ({"headers": {"X-Campaign": "a\nb"}}, "line break"),
        ({"headers": {"Subject": "again"}}, "reserved"),
        ({"headers": {"Bad Name": "x"}}, "invalid"),
        ({"outbox_id": "../escape"}, "safe file name"),
    ],
)
def test_unsafe_messages_are_refused_permanently(
    outbox: LocalOutboxEmail, overrides: dict[str, Any], reason: str
) -> None:
    [outcome] = outbox.send_many([email(**overrides)])

    assert isinstance(outcome.error, PermanentSendError)
    assert reason in str(outcome.error)
    assert list(outbox.email_dir.iterdir()) == []


header_text = st.text(
    alphabet=st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"]), min_size=1, max_size=300
).filter(lambda s: s.strip() != "")
body_text = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r"), max_size=2000)


@settings(max_examples=150, deadline=None)
@given(subject=header_text, text=body_text, html=body_text)
def test_any_subject_and_body_survive_the_round_trip(subject: str, text: str, html: str) -> None:
    data = render_eml(email(subject=subject, text=text, html=html), date=NOW)

    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(parsed, ParsedEmail)
    assert all_defects(parsed) == []
    assert " ".join(str(parsed["Subject"]).split()) == " ".join(subject.split())
    text_part, html_part = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert text_part is not None and html_part is not None
    assert text_part.get_content() == text
    assert html_part.get_content() == html


def test_sms_are_appended_as_json_lines(tmp_path: Path) -> None:
    outbox = LocalOutboxSms(tmp_path)

    results = [
        outbox.send(SmsMessage("ob-1", "+33612345678", "Webinar jeudi 10h. STOP au 36180")),
        outbox.send(SmsMessage("ob-2", "+33612345679", "Leçon offerte : répondez OUI. STOP au 36180")),
    ]

    lines = [json.loads(line) for line in (tmp_path / "sms.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {
            "outbox_id": "ob-1",
            "to": "+33612345678",
            "body": "Webinar jeudi 10h. STOP au 36180",
            "segments": 1,
            "encoding": "GSM-7",
        },
        {
            "outbox_id": "ob-2",
            "to": "+33612345679",
            "body": "Leçon offerte : répondez OUI. STOP au 36180",
            "segments": 1,
            "encoding": "UCS-2",
        },
    ]
    assert [r.provider_message_id for r in results] == ["local-ob-1", "local-ob-2"]
    assert [r.segments for r in results] == [1, 1]


def test_concurrent_sms_lines_stay_whole(tmp_path: Path) -> None:
    outbox = LocalOutboxSms(tmp_path)
    body = "x" * 400  # long lines make interleaving visible if the lock were missing

    def send(worker: int) -> None:
        outbox.send_many([SmsMessage(f"w{worker}-{i}", "+33612345678", body) for i in range(100)])

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    records = [json.loads(line) for line in (tmp_path / "sms.jsonl").read_text().splitlines()]
    assert len(records) == 800
    assert len({r["outbox_id"] for r in records}) == 800
    assert all(r["segments"] == 3 for r in records)


class ExplodingSms(LocalOutboxSms):
    """A channel with a bug in reading one result, after the message was written."""

    def parse_result(self, message: SmsMessage, response: int) -> SendResult:
        if message.outbox_id == "ob-2":
            raise KeyError("sid")
        return super().parse_result(message, response)


def test_an_unexpected_error_is_an_unknown_outcome_and_the_batch_goes_on(tmp_path: Path) -> None:
    messages = [SmsMessage(f"ob-{i}", "+33612345678", "Bonjour. STOP au 36180") for i in (1, 2, 3)]

    outcomes = ExplodingSms(tmp_path).send_many(messages)

    assert [o.ok for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, UnknownOutcomeError)
    assert isinstance(outcomes[1].error.__cause__, KeyError)
    assert len((tmp_path / "sms.jsonl").read_text().splitlines()) == 3
