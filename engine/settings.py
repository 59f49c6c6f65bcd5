"""Deployment settings: where the database, policy, templates and outbox are, and the mail server.

Built once per command from (highest first) command-line options, `AFTERSALES_*` environment
variables, and `aftersales.toml` in the working directory. Secrets come from the environment only.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from engine.notices.templates import RenderLimits
from engine.notices.window import SendWindow
from engine.scheduler import parse_every

CONFIG_FILE = Path("aftersales.toml")


def _interval(value: Any) -> timedelta:
    if isinstance(value, timedelta):  # from the command line, already parsed
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r}: write the interval as text, such as '15m' or '1h'")
    return parse_every(value)


class SmtpSettings(BaseModel):
    """How to reach the mail server; without a host, notices are written as .eml files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str | None = Field(None, description="Mail server host; empty: write .eml files")
    port: int = Field(587, description="Mail server port")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (587), tls (implicit, 465) or none (loopback only)"
    )
    username: str | None = Field(None, description="Login name, if the server wants one")
    password: SecretStr | None = Field(
        None, description="From AFTERSALES_SMTP__PASSWORD only; never put it in a file"
    )
    timeout_s: float = Field(
        30.0, gt=0, description="Seconds to wait for the server at each step but the last"
    )
    data_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Seconds to wait for the server's reply after a message's data "
        "(RFC 5321 4.5.3.2 asks for at least 600)",
    )
    concurrency: int = Field(4, ge=1, le=32, description="Connections used at once")
    unusual_port: bool = Field(
        False,
        description="Allow a security mode that contradicts the port's usual one "
        "(465 implicit TLS; 25 and 587 STARTTLS)",
    )

    @model_validator(mode="after")
    def _mode_fits_port(self) -> SmtpSettings:
        if self.host is None or self.unusual_port:
            return self
        # Implicit TLS against a STARTTLS port (or the reverse) fails every session at run time.
        if self.port in _IMPLICIT_TLS_PORTS and self.security != "tls":
            usual = "tls"
        elif self.port in _STARTTLS_PORTS and self.security == "tls":
            usual = "starttls"
        else:
            return self
        raise ValueError(
            f"smtp.security = {self.security} does not fit port {self.port}, which speaks "
            f"{usual}: every session would fail; set smtp.security = {usual}, "
            "or smtp.unusual_port = true if this server really does that"
        )


# The well-known ports: 465 implicit TLS (RFC 8314), 25 and 587 plain text upgraded by STARTTLS.
_IMPLICIT_TLS_PORTS = frozenset({465})
_STARTTLS_PORTS = frozenset({25, 587})


class DeliverySettings(BaseModel):
    """When customer letters may go out, and how delivery records its outcomes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_window: str | None = Field(
        None,
        pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$",
        description="Customer letters go out only between these local hours, e.g. 09:00-20:00",
    )
    customer_days: tuple[str, ...] = Field(
        ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
        description="Weekdays of the customer window (mon..sun)",
    )
    every_minutes: int | None = Field(
        None, description="Deprecated and ignored: every cycle delivers (see schedule_every)"
    )
    record_patience_s: float = Field(
        60.0,
        gt=0,
        description="How long delivery retries writing outcomes to a locked database "
        "before it keeps them in the journal file instead",
    )

    @model_validator(mode="after")
    def _window_parses(self) -> DeliverySettings:
        if self.customer_window is not None:
            SendWindow.parse(self.customer_window, self.customer_days)
        return self

    def window(self) -> SendWindow | None:
        """The customer send window, if one is set."""
        if self.customer_window is None:
            return None
        return SendWindow.parse(self.customer_window, self.customer_days)


class RenderingSettings(BaseModel):
    """Caps on rendering one letter: a runaway template fails its own notices, not the night."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_seconds: float = Field(
        RenderLimits.max_seconds,
        gt=0,
        le=600,
        description="Longest one letter may take to render; past it, its notices are "
        "render_failed and preview/validate name the template line",
    )
    max_chars: int = Field(
        RenderLimits.max_chars,
        ge=1000,
        description="Most characters one letter (subject, text and HTML together) may have",
    )

    def limits(self) -> RenderLimits:
        """These caps, as the templates take them."""
        return RenderLimits(self.max_seconds, self.max_chars)


class Settings(BaseSettings):
    """Everything a command needs to know about this installation."""

    model_config = SettingsConfigDict(
        env_prefix="AFTERSALES_",
        env_nested_delimiter="__",
        toml_file=CONFIG_FILE,
        frozen=True,
        extra="forbid",
    )

    db: str = Field("sqlite:///aftersales.db", description="SQLAlchemy database URL")
    rules: Path = Field(Path("rules"), description="Folder of policy files (*.yaml)")
    templates: Path = Field(Path("templates/notices"), description="Folder of notice templates")
    outbox_dir: Path = Field(Path("outbox"), description="Where .eml files go without SMTP")
    artifacts_dir: Path = Field(Path("runs"), description="Where run artifacts (JSON) go")
    mail_from: str = Field(
        "After-sales Service <service@aftersales.example>", description="From header"
    )
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    rendering: RenderingSettings = Field(default_factory=RenderingSettings)
    schedule_every: Annotated[timedelta, BeforeValidator(_interval)] = Field(
        timedelta(minutes=15),
        description="`aftersales schedule` runs a cycle this often: 15m, 5m, 1h",
    )
    # Kept so that a configuration written for the nightly loop still loads: the cycle now
    # does each daily part at its own local time, set in the policy's `schedule:`.
    schedule_at: str | None = Field(
        None, description="Deprecated and ignored: the policy's schedule: gives the times"
    )
    schedule_timezone: str | None = Field(
        None, description="Deprecated and ignored: each branch's own time zone is used"
    )

    def deprecated(self) -> list[str]:
        """The settings given that no longer do anything, each with what replaced it."""
        found = []
        if self.schedule_at is not None or self.schedule_timezone is not None:
            found.append(
                "schedule_at and schedule_timezone are ignored: each daily part runs at its "
                "local time from the policy's schedule: (docs/policy.md)"
            )
        if self.delivery.every_minutes is not None:
            found.append("delivery.every_minutes is ignored: every cycle delivers")
        return found

    @model_validator(mode="after")
    def _no_password_in_file(self) -> Settings:
        if self.smtp.password is not None and _password_in_config_file():
            raise ValueError(
                "smtp.password must not be written in aftersales.toml; "
                "set AFTERSALES_SMTP__PASSWORD in the environment instead"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def _password_in_config_file() -> bool:
    if not CONFIG_FILE.is_file():
        return False
    import tomllib

    data = tomllib.loads(CONFIG_FILE.read_text(encoding="utf-8"))
    return "password" in data.get("smtp", {})
