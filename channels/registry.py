"""Choosing the delivery channels from the settings.

``email_channel`` / ``sms_channel`` are ``"auto"`` (the provider when its credentials are set, else
the local outbox), or force ``"sendgrid"`` / ``"twilio"`` / ``"local-outbox"``. Half-configured
credentials are an error, never a silent fallback to the local outbox: a production deployment
that "sends" into a directory is worse than one that refuses to start.
"""

from __future__ import annotations

from channels.base import AnyChannel, ChannelKind
from channels.circuit import CircuitBreaker
from channels.local_outbox import LocalOutboxEmail, LocalOutboxSms
from channels.retry import RetryPolicy
from spirale.errors import ConfigError
from spirale.settings import Settings

AUTO = "auto"
LOCAL_OUTBOX = "local-outbox"
EMAIL_CHOICES = (AUTO, "sendgrid", LOCAL_OUTBOX)
SMS_CHOICES = (AUTO, "twilio", LOCAL_OUTBOX)


def build_channels(settings: Settings) -> dict[ChannelKind, AnyChannel]:
    """One channel per kind, as the settings ask."""
    return {ChannelKind.EMAIL: build_email_channel(settings), ChannelKind.SMS: build_sms_channel(settings)}


def build_email_channel(settings: Settings) -> AnyChannel:
    """SendGrid, or the local outbox."""
    choice = _choice("SPIRALE_EMAIL_CHANNEL", settings.email_channel, EMAIL_CHOICES)
    if choice == AUTO:
        choice = "sendgrid" if settings.sendgrid_api_key is not None else LOCAL_OUTBOX
    if choice == LOCAL_OUTBOX:
        return LocalOutboxEmail(settings.outbox_dir)
    if settings.sendgrid_api_key is None or not settings.sendgrid_api_key.get_secret_value():
        raise ConfigError("SPIRALE_EMAIL_CHANNEL=sendgrid needs SPIRALE_SENDGRID_API_KEY")
    # Imported here so that a local set-up never pays for loading the provider SDK.
    from channels.sendgrid import SendGridEmail

    # Behind a circuit breaker: during an outage messages fail fast as "not processed" and are
    # retried later, instead of hammering the provider once per message.
    return CircuitBreaker(
        SendGridEmail(
            settings.sendgrid_api_key,
            host=settings.sendgrid_host,
            sandbox=settings.sendgrid_sandbox,
            concurrency=settings.email_concurrency,
            retry=_retry_policy(settings),
        )
    )


def build_sms_channel(settings: Settings) -> AnyChannel:
    """Twilio, or the local outbox."""
    choice = _choice("SPIRALE_SMS_CHANNEL", settings.sms_channel, SMS_CHOICES)
    if choice == AUTO:
        choice = "twilio" if _twilio_settings_given(settings) else LOCAL_OUTBOX
    if choice == LOCAL_OUTBOX:
        return LocalOutboxSms(settings.outbox_dir)
    account_sid, auth_token = settings.twilio_account_sid, settings.twilio_auth_token
    missing = _missing_twilio_settings(settings)
    if missing or not account_sid or auth_token is None:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"Twilio is {_why_twilio(settings)} but {' and '.join(missing)} {verb} not set")
    from channels.twilio import TwilioSms

    return CircuitBreaker(
        TwilioSms(
            account_sid,
            auth_token,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            from_=settings.twilio_from,
            base_url=settings.twilio_base_url,
            per_second=settings.sms_per_second,
            retry=_retry_policy(settings),
        )
    )


def _choice(variable: str, value: str, allowed: tuple[str, ...]) -> str:
    choice = value.strip().lower()
    if choice not in allowed:
        raise ConfigError(f"{variable}={value!r} is not one of {', '.join(allowed)}")
    return choice


def _twilio_settings_given(settings: Settings) -> bool:
    return any(
        (
            settings.twilio_account_sid,
            settings.twilio_auth_token is not None,
            settings.twilio_messaging_service_sid,
            settings.twilio_from,
        )
    )


def _missing_twilio_settings(settings: Settings) -> list[str]:
    missing = []
    if not settings.twilio_account_sid:
        missing.append("SPIRALE_TWILIO_ACCOUNT_SID")
    if settings.twilio_auth_token is None or not settings.twilio_auth_token.get_secret_value():
        missing.append("SPIRALE_TWILIO_AUTH_TOKEN")
    if not settings.twilio_messaging_service_sid and not settings.twilio_from:
        missing.append("SPIRALE_TWILIO_MESSAGING_SERVICE_SID (or SPIRALE_TWILIO_FROM)")
    return missing


def _why_twilio(settings: Settings) -> str:
    if settings.sms_channel.strip().lower() == "twilio":
        return "selected (SPIRALE_SMS_CHANNEL=twilio)"
    return "partly configured"


def _retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.send_max_attempts)
