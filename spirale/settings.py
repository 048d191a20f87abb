"""Runtime settings, read from ``SPIRALE_*`` environment variables (and an optional ``.env``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything configurable. Secrets are ``SecretStr`` so they never print in logs or errors."""

    model_config = SettingsConfigDict(env_prefix="SPIRALE_", env_file=".env", extra="ignore")

    # Not in repr/str: a PostgreSQL URL may carry a password.
    database_url: str = Field(default=f"sqlite:///{PROJECT_ROOT / 'var' / 'spirale.db'}", repr=False)
    sequences_dir: Path = PROJECT_ROOT / "sequences"
    outbox_dir: Path = PROJECT_ROOT / "var" / "outbox"
    secret_key: SecretStr = SecretStr("dev-only-secret-change-me")
    public_url: str = "http://127.0.0.1:8080"
    api_token: SecretStr | None = None  # bearer token of the API's write endpoints (tasks, conversions)

    # Sender identity (names the sender in every message, as the law requires).
    sender_email: str = "marketing@spirale.example"
    sender_name: str = "Spirale"
    unsubscribe_mailto: str = "unsubscribe@spirale.example"
    sms_help_text: str = "Spirale: aide au 01 00 00 00 00. STOP au 36180 pour ne plus recevoir de SMS."

    # Channel selection: "auto" uses providers when credentials are set, else the local outbox.
    email_channel: str = "auto"
    sms_channel: str = "auto"

    sendgrid_api_key: SecretStr | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_sandbox: bool = False
    sendgrid_webhook_public_key: str | None = None
    email_concurrency: int = Field(default=8, ge=1, le=64)

    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_from: str | None = None
    twilio_base_url: str = "https://api.twilio.com"
    sms_per_second: float = Field(default=1.0, gt=0)

    # Dispatch policy.
    frequency_cap_count: int = Field(default=1, ge=1)
    frequency_cap_hours: float = Field(default=24.0, gt=0)
    dispatch_batch_size: int = Field(default=1000, ge=1, le=50_000)
    claim_lease_seconds: int = Field(default=300, ge=5)
    send_max_attempts: int = Field(default=5, ge=1)  # in-process tries of one send (429, refused)
    retry_max_delay_seconds: int = Field(default=3600, ge=60)  # cap of the backoff between attempts

    # Action plan budget, in euros: per email, per SMS segment (as operators bill), per sales call.
    cost_email: float = Field(default=0.001, ge=0)
    cost_sms: float = Field(default=0.075, ge=0)
    cost_call: float = Field(default=2.0, ge=0)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings`` and pass them in)."""
    return Settings()
