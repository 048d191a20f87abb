"""The sales team (``sequences/team.yaml``) and who owns a hot lead.

A hot lead goes to the salespeople whose territory holds it: a French département (read from the
postcode) is more specific than a country, so it wins. Among several candidates, or when nobody
covers the lead, assignment is round robin balanced by load: the candidate holding the fewest hot
leads gets it, ties going to the first in file order. The count is read from the database in the
transaction that assigns, so the rotation survives restarts and needs no stored cursor.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from sqlalchemy import Connection, Table, func, select

from models.leads import normalize_email, normalize_phone
from models.tables import Lead, LeadStatus
from scoring.source import load_model
from sequences.diagnostics import Diagnostic, count_errors
from sequences.schema import STEP_ID
from spirale.errors import ConfigError

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
DEPARTEMENT = re.compile(r"^(\d{2}|2A|2B|97\d)$")
POSTCODE = re.compile(r"^\d{5}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _departement(value: Any) -> str:
    if not DEPARTEMENT.match(str(value)):
        raise ValueError(f"expected a département number like '75', '2A' or '971', got {value!r}")
    return str(value)


Departement = Annotated[str, BeforeValidator(_departement)]


class Territory(_Strict):
    """Countries (ISO codes) and French départements ("75", "2A", "971") a salesperson covers."""

    countries: tuple[str, ...] = ()
    departements: tuple[Departement, ...] = ()

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for code in value:
            if not re.fullmatch(r"[A-Z]{2}", code):
                raise ValueError(f"expected ISO country codes like 'FR', got {code!r}")
        return value


class Salesperson(_Strict):
    """One member of the sales team."""

    name: str
    full_name: str = ""
    email: str | None = None
    phone: str | None = None
    territories: Territory = Territory()
    active: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError("expected lowercase letters, digits, '-' or '_' (e.g. 'alice')")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalize_email(value) if value else None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalize_phone(value) if value else None


class Team(_Strict):
    """The whole of ``team.yaml``."""

    salespeople: tuple[Salesperson, ...] = Field(min_length=1)

    @field_validator("salespeople")
    @classmethod
    def _unique_names(cls, value: tuple[Salesperson, ...]) -> tuple[Salesperson, ...]:
        names = [person.name for person in value]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ValueError(f"salesperson {duplicate!r} is listed twice")
        if not any(person.active for person in value):
            raise ValueError("at least one salesperson must be active")
        return value

    def get(self, name: str | None) -> Salesperson | None:
        """The salesperson called ``name``, if any."""
        return next((p for p in self.salespeople if p.name == name), None)

    def candidates(self, country: str | None, departement: str | None) -> list[Salesperson]:
        """Active salespeople covering the lead: by département, else by country, else everyone."""
        active = [p for p in self.salespeople if p.active]
        if departement and (country or "FR") == "FR":
            local = [p for p in active if departement in p.territories.departements]
            if local:
                return local
        national = [p for p in active if country and country in p.territories.countries]
        return national or active


def departement_of(postcode: object, country: str | None = "FR") -> str | None:
    """The French département of a postcode (``"69003"`` -> ``"69"``, Corsica ``"20090"`` ->
    ``"2A"``, overseas ``"97411"`` -> ``"974"``), or ``None`` outside France or when unreadable."""
    if (country or "FR") != "FR" or postcode is None:
        return None
    text = str(postcode).strip().replace(" ", "")
    if not POSTCODE.match(text):
        return None
    if text.startswith("97"):
        return text[:3]
    if text.startswith("20"):
        return "2A" if text < "20200" else "2B"
    return text[:2]


def lead_departement(lead: Mapping[str, Any]) -> str | None:
    """The département of a lead, from its ``postcode`` attribute."""
    attributes = lead.get("attributes") or {}
    return departement_of(attributes.get("postcode") or attributes.get("code_postal"), lead.get("country"))


def assign_owners(
    conn: Connection, *, team: Team, leads: Sequence[Mapping[str, Any]]
) -> dict[uuid.UUID, str]:
    """An owner for each lead (``id``, ``country``, ``attributes``) that has none; leads that
    already have an owner on the team keep it. The caller writes the result."""
    names = [p.name for p in team.salespeople]
    load: Counter[str] = Counter(
        dict(
            conn.execute(
                select(LEADS.c.owner, func.count())
                .where(LEADS.c.status == LeadStatus.HOT.value, LEADS.c.owner.in_(names))
                .group_by(LEADS.c.owner)
            ).all()
        )
    )
    owners: dict[uuid.UUID, str] = {}
    for lead in leads:
        current = team.get(lead.get("owner"))
        if current is not None and current.active:
            owners[lead["id"]] = current.name
            continue
        candidates = team.candidates(lead.get("country"), lead_departement(lead))
        chosen = min(candidates, key=lambda p: (load[p.name], names.index(p.name)))
        load[chosen.name] += 1
        owners[lead["id"]] = chosen.name
    return owners


def validate_team_file(path: Path) -> list[Diagnostic]:
    """Every problem of a team file, as ``FILE:LINE:COL`` diagnostics (empty when valid)."""
    return load_model(path, Team, what="the sales team").diagnostics


def load_team(path: Path) -> Team:
    """The team in ``path``; raises ``ConfigError`` listing every problem."""
    loaded = load_model(path, Team, what="the sales team")
    if loaded.model is None or count_errors(loaded.diagnostics):
        lines = "\n".join(str(d) for d in loaded.diagnostics if d.is_error)
        raise ConfigError(f"{path} is not a valid sales team:\n{lines}")
    return loaded.model


def team_path(sequences_dir: Path) -> Path:
    """Where the team of a sequences directory lives."""
    return sequences_dir / "team.yaml"
