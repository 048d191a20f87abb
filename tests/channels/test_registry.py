"""Choosing channels from the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from channels.base import ChannelKind
from channels.circuit import CircuitBreaker
from channels.local_outbox import LocalOutboxEmail, LocalOutboxSms
from channels.registry import build_channels
from channels.sendgrid import SendGridEmail
from channels.twilio import TwilioSms
from spirale.errors import ConfigError
from spirale.settings import Settings

SID = "AC" + "1" * 32
SERVICE = "MG" + "2" * 32


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "outbox_dir": tmp_path / "outbox",
        "email_channel": "auto",
        "sms_channel": "auto",
        "sendgrid_api_key": None,
        "twilio_account_sid": None,
        "twilio_auth_token": None,
        "twilio_messaging_service_sid": None,
        "twilio_from": None,
    } | overrides
    return Settings(_env_file=None, **values)


def test_without_credentials_everything_goes_to_the_local_outbox(tmp_path: Path) -> None:
    channels = build_channels(make_settings(tmp_path))

    assert isinstance(channels[ChannelKind.EMAIL], LocalOutboxEmail)
    assert isinstance(channels[ChannelKind.SMS], LocalOutboxSms)
    assert {channel.name for channel in channels.values()} == {"local-outbox"}
    assert (tmp_path / "outbox" / "email").is_dir()


def test_auto_uses_sendgrid_when_its_key_is_set(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        sendgrid_api_key=SecretStr("SG.k.k"),
        sendgrid_host="http://127.0.0.1:9",
        sendgrid_sandbox=True,
        email_concurrency=5,
    )

    breaker = build_channels(settings)[ChannelKind.EMAIL]

    assert isinstance(breaker, CircuitBreaker) and breaker.name == "sendgrid"
    email = breaker.channel
    assert isinstance(email, SendGridEmail)
    assert (email.host, email.sandbox, email.concurrency) == ("http://127.0.0.1:9", True, 5)
    assert email.retry.max_attempts == settings.send_max_attempts


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ({"twilio_messaging_service_sid": SERVICE}, {"messaging_service_sid": SERVICE}),
        ({"twilio_from": "+15005550006"}, {"from_": "+15005550006"}),
    ],
)
def test_auto_uses_twilio_when_fully_configured(
    tmp_path: Path, sender: dict[str, str], expected: dict[str, str]
) -> None:
    settings = make_settings(
        tmp_path,
        twilio_account_sid=SID,
        twilio_auth_token=SecretStr("token"),
        twilio_base_url="http://127.0.0.1:9",
        **sender,
    )

    breaker = build_channels(settings)[ChannelKind.SMS]

    assert isinstance(breaker, CircuitBreaker) and breaker.message_status == breaker.channel.message_status
    sms = breaker.channel
    assert isinstance(sms, TwilioSms)
    assert sms.sender == expected
    assert sms.base_url == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("partial", "missing"),
    [
        ({"twilio_account_sid": SID}, ["SPIRALE_TWILIO_AUTH_TOKEN", "SPIRALE_TWILIO_MESSAGING_SERVICE_SID"]),
        (
            {"twilio_account_sid": SID, "twilio_auth_token": SecretStr("t")},
            ["SPIRALE_TWILIO_MESSAGING_SERVICE_SID"],
        ),
        ({"twilio_from": "+15005550006"}, ["SPIRALE_TWILIO_ACCOUNT_SID", "SPIRALE_TWILIO_AUTH_TOKEN"]),
    ],
)
def test_partial_twilio_credentials_are_a_config_error(
    tmp_path: Path, partial: dict[str, Any], missing: list[str]
) -> None:
    with pytest.raises(ConfigError, match="partly configured") as caught:
        build_channels(make_settings(tmp_path, **partial))

    assert all(name in str(caught.value) for name in missing)


def test_forcing_sendgrid_without_a_key_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SPIRALE_SENDGRID_API_KEY"):
        build_channels(make_settings(tmp_path, email_channel="sendgrid"))


def test_forcing_twilio_without_credentials_names_the_settings(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"selected .*SPIRALE_TWILIO_ACCOUNT_SID and SPIRALE_TWILIO_AUTH_TOKEN"
    ):
        build_channels(make_settings(tmp_path, sms_channel="twilio"))


def test_forcing_the_local_outbox_ignores_credentials(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        email_channel="local-outbox",
        sms_channel="local-outbox",
        sendgrid_api_key=SecretStr("SG.k.k"),
        twilio_account_sid=SID,
        twilio_auth_token=SecretStr("token"),
        twilio_from="+15005550006",
    )

    channels = build_channels(settings)

    assert isinstance(channels[ChannelKind.EMAIL], LocalOutboxEmail)
    assert isinstance(channels[ChannelKind.SMS], LocalOutboxSms)


def test_an_unknown_channel_name_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="SPIRALE_EMAIL_CHANNEL='mailgun' is not one of auto, sendgrid, local-outbox"
    ):
        build_channels(make_settings(tmp_path, email_channel="mailgun"))
