"""The demo's synthetic people (Faker ``fr_FR``; the same seed gives the same people).

Two groups, as a French SME's marketing sees them:

- **downloads**: people filling in the web forms over the simulated days. As the brief observes,
  about nine in ten white-paper downloaders are not real leads: competitors, students,
  consultants, foreigners, throw-away addresses. Their addresses and job titles are drawn from
  ``scoring.yaml`` itself, so the intake disqualifies exactly the ones it should. A few real leads
  come back for a second download.
- **the CRM base** already in the database on day one: customers of classes A, B and C (some about
  to lapse), former customers, and prospects gone quiet months ago: the audience of the
  reactivation campaign.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from faker import Faker

from scoring.rules import ScoringRules

PARIS = ZoneInfo("Europe/Paris")
#: Which form people fill in, and how often (``sequences/forms.yaml``).
FORM_MIX = (
    ("livre-blanc", 50),
    ("checklist-rgpd", 20),
    ("webinar", 15),
    ("newsletter", 8),
    ("demande-rappel", 7),
)
#: Share of off-target people per form: content attracts them, a call-back request much less.
OFF_TARGET = {"demande-rappel": 0.5}
OFF_TARGET_DEFAULT = 0.9
#: Share of the leads that are already in the CRM on day one (the rest download something).
BASE_SHARE = 0.35
SECOND_DOWNLOAD = 0.15
DECISION_MAKERS = ("Gérant", "Gérante", "Dirigeant", "Dirigeante", "PDG", "Fondateur", "Fondatrice")
SALES_HEADS = (
    "Directeur commercial",
    "Directrice commerciale",
    "Responsable marketing",
    "Directrice marketing",
)
MANAGERS = ("Responsable des achats", "Chef de projet", "Directeur administratif", "Responsable qualité")
OTHERS = ("Assistante commerciale", "Comptable", "Chargé de communication", "Technicien", "Office manager")
OFF_TARGET_TITLES = ("Product marketing manager", "Growth manager", "Customer success", "")
FOREIGN = ("US", "DE", "ES", "IT", "GB", "MA", "CA", "SN", "TN", "PT")
FREE_MAIL = ("gmail.com", "orange.fr", "free.fr", "hotmail.fr", "laposte.net", "yahoo.fr")
WILDCARDS = ("lyon2", "paris8", "nantes", "rennes1", "lille", "bordeaux", "grenoble", "tours")
INDUSTRIES = (
    "industrie",
    "btp",
    "services aux entreprises",
    "distribution",
    "transport",
    "santé",
    "tourisme",
)
PERSONAS = ("dirigeant-pme", "directeur-commercial", "directeur-marketing", "")


@dataclass(frozen=True, slots=True)
class Download:
    """One web-form submission: when it arrives, on which form, the fields posted, and who it is."""

    at: datetime
    form_id: str
    fields: dict[str, Any]
    kind: str  # "real lead", or why the person is off-target


@dataclass
class Population:
    """Everyone in the demo."""

    downloads: list[Download] = field(default_factory=list)
    customers: list[dict[str, str]] = field(default_factory=list)  # rows of a CRM import
    dormant: list[dict[str, Any]] = field(default_factory=list)  # prospects gone quiet, as lead rows

    @property
    def size(self) -> int:
        """Distinct people (a second download is the same person)."""
        return len({d.fields["email"] for d in self.downloads}) + len(self.customers) + len(self.dormant)


def build_population(leads: int, *, start: datetime, days: int, seed: int, rules: ScoringRules) -> Population:
    """About ``leads`` people: downloads spread over ``days`` from ``start``, and the CRM base."""
    people = _People(seed, rules)
    base = round(leads * BASE_SHARE)
    population = Population()
    population.customers = [people.customer(start) for _ in range(base // 4)]
    population.dormant = [people.dormant(start) for _ in range(base - len(population.customers))]
    arrivals = _arrival_times(leads - base, start=start, days=days, rng=people.rng)
    for at in arrivals:
        download = people.download(at)
        population.downloads.append(download)
        if download.kind == REAL and people.rng.random() < SECOND_DOWNLOAD:
            again = at + timedelta(days=people.rng.uniform(3, 30))
            if again < start + timedelta(days=days):
                form = people.rng.choice(("livre-blanc", "checklist-rgpd", "webinar"))
                population.downloads.append(Download(again, form, download.fields, REAL))
    population.downloads.sort(key=lambda d: d.at)
    return population


REAL = "real lead"


def _arrival_times(count: int, *, start: datetime, days: int, rng: random.Random) -> list[datetime]:
    """Arrivals over the days: fewer at weekends, mostly during the day (Paris time)."""
    weights = [
        0.35 if (start + timedelta(days=d)).astimezone(PARIS).weekday() >= 5 else 1.0 for d in range(days)
    ]
    chosen = rng.choices(range(days), weights=weights, k=count)
    times = []
    for day in chosen:
        local = (start + timedelta(days=day)).astimezone(PARIS).replace(hour=0, minute=0, second=0)
        hour = min(23.9, max(6.0, rng.gauss(14.0, 4.0)))
        times.append((local + timedelta(hours=hour)).astimezone(start.tzinfo))
    return sorted(times)


class _People:
    """Draws people; every draw comes from one seeded generator."""

    def __init__(self, seed: int, rules: ScoringRules) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("fr_FR")
        self.fake.seed_instance(seed)
        self.rules = rules
        self.emails: set[str] = set()
        self.off_target = self._off_target_kinds()

    # -- who -----------------------------------------------------------------------------------------
    def _person(self) -> dict[str, Any]:
        female = self.rng.random() < 0.5
        first = self.fake.first_name_female() if female else self.fake.first_name_male()
        company = self.fake.company()
        return {
            "first_name": first,
            "last_name": self.fake.last_name(),
            "company": company,
            "country": "FR",
            "consent_email": True,
            "consent_sms": self.rng.random() < 0.55,
            "phone": self._mobile(),
        }

    def _mobile(self) -> str:
        """A French mobile number (06 or 07), valid for ``phonenumbers``."""
        while True:
            number = f"+33{self.rng.choice('67')}{self.rng.randrange(10**7, 10**8)}"
            if phonenumbers.is_valid_number(phonenumbers.parse(number)):
                return number

    def _email(self, person: dict[str, Any], domain: str) -> str:
        local = f"{_ascii(person['first_name'])}.{_ascii(person['last_name'])}"
        email = f"{local}@{domain}"
        suffix = 2
        while email in self.emails:
            email = f"{local}{suffix}@{domain}"
            suffix += 1
        self.emails.add(email)
        return email

    def download(self, at: datetime) -> Download:
        form = self.rng.choices([f for f, _ in FORM_MIX], weights=[w for _, w in FORM_MIX])[0]
        person = self._person()
        share = OFF_TARGET.get(form, OFF_TARGET_DEFAULT)
        kind = self.rng.choice(self.off_target) if self.off_target and self.rng.random() < share else REAL
        if kind == REAL:
            person["job_title"] = self._real_title()
            free = self.rng.random() < 0.2
            domain = self.rng.choice(FREE_MAIL) if free else f"{_ascii(person['company'])}.fr"
        else:
            domain = self._off_target(kind, person)
        person["email"] = self._email(person, domain)
        if not person["consent_sms"] or person["country"] != "FR":
            person.pop("phone")
        return Download(at, form, person, kind)

    def _real_title(self) -> str:
        group = self.rng.choices((DECISION_MAKERS, SALES_HEADS, MANAGERS, OTHERS), weights=(30, 25, 25, 20))[
            0
        ]
        return self.rng.choice(group)

    def _off_target_kinds(self) -> list[str]:
        spec = self.rules.qualification
        kinds = [
            name
            for name, check in (
                ("competitor", spec.competitors),
                ("student", spec.academic),
                ("consultant", spec.job_titles),
                ("disposable address", spec.disposable),
            )
            if check is not None
        ]
        if spec.countries is not None:
            kinds.append("foreigner")
        return kinds

    def _off_target(self, kind: str, person: dict[str, Any]) -> str:
        """Shape ``person`` as an off-target ``kind``; returns its email domain."""
        spec = self.rules.qualification
        person["job_title"] = self.rng.choice(OFF_TARGET_TITLES)
        if kind == "competitor" and spec.competitors is not None:
            return self.rng.choice(spec.competitors.domains)
        if kind == "student" and spec.academic is not None:
            person["job_title"] = self.rng.choice(("Étudiant", "Étudiante", ""))
            return self._instantiate(self.rng.choice(spec.academic.domains))
        if kind == "consultant" and spec.job_titles is not None:
            person["job_title"] = self.rng.choice(spec.job_titles.words).capitalize()
            return self.rng.choice(FREE_MAIL)
        if kind == "disposable address" and spec.disposable is not None:
            return self.rng.choice(spec.disposable.domains)
        targets = set(self.rules.target_countries)
        person["country"] = self.rng.choice([c for c in FOREIGN if c not in targets])
        return self.rng.choice(("gmail.com", "outlook.com", "yahoo.com"))

    def _instantiate(self, pattern: str) -> str:
        """A domain matching ``pattern``: ``univ-*.fr`` -> ``univ-lyon2.fr``, ``etu.*`` -> ``etu.fr``."""
        if pattern.endswith(".*"):
            pattern = pattern[:-1] + "fr"
        return pattern.replace("*", self.rng.choice(WILDCARDS))

    # -- the CRM base ----------------------------------------------------------------------------------
    def customer(self, start: datetime) -> dict[str, str]:
        """A customer (class A, B or C), or a former customer, as a row of a CRM import."""
        person = self._person()
        klass = self.rng.choices("ABC", weights=(15, 35, 50))[0]
        lapsed = self.rng.random() < 0.3
        days_ago = self.rng.uniform(400, 1000) if lapsed else self.rng.uniform(5, 364)
        row = {
            "email": self._email(person, f"{_ascii(person['company'])}.fr"),
            "first_name": person["first_name"],
            "last_name": person["last_name"],
            "company": person["company"],
            "job_title": self._real_title(),
            "country": "FR",
            "phone": person["phone"],
            "consent_email": "oui",
            "consent_sms": "oui" if person["consent_sms"] else "non",
            "customer_class": klass,
            "status": "former_customer" if lapsed else "customer",
            "last_purchase_at": (start - timedelta(days=days_ago)).date().isoformat(),
            "company_size": str(self.rng.choice((8, 15, 40, 120, 300))),
            "industry": self.rng.choice(INDUSTRIES),
        }
        return row

    def dormant(self, start: datetime) -> dict[str, Any]:
        """A prospect met at a trade show or through content long ago, silent since."""
        person = self._person()
        created = start - timedelta(days=self.rng.uniform(150, 720))
        engaged = created + (start - timedelta(days=130) - created) * self.rng.random()
        email = self._email(person, self.rng.choice((f"{_ascii(person['company'])}.fr", *FREE_MAIL)))
        return {
            "id": uuid.UUID(int=self.rng.getrandbits(128), version=4),
            "email": email,
            "phone": person["phone"] if person["consent_sms"] else None,
            "first_name": person["first_name"],
            "last_name": person["last_name"],
            "company": person["company"],
            "job_title": self._real_title(),
            "country": "FR",
            "timezone": "Europe/Paris",
            "consent_email": True,
            "consent_email_source": "salon 2025",
            "consent_email_at": created,
            "consent_sms": person["consent_sms"],
            "consent_sms_source": "salon 2025" if person["consent_sms"] else None,
            "consent_sms_at": created if person["consent_sms"] else None,
            "status": "cold",
            "source": "salon",
            "created_at": created,
            "updated_at": created,
            "last_engaged_at": engaged if self.rng.random() < 0.5 else None,
            "attributes": {"persona": self.rng.choice(PERSONAS)},
        }


def _ascii(text: str) -> str:
    """``"Élodie Lefèvre S.A.R.L."`` -> ``"elodie-lefevre-sarl"``: a usable email part or domain label."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = ["".join(c for c in word if c.isalnum()) for word in folded.replace("'", " ").split()]
    return "-".join(w for w in words if w) or "contact"


def split_kinds(downloads: Sequence[Download]) -> dict[str, int]:
    """How many downloads of each kind (real leads and each off-target reason)."""
    counts: dict[str, int] = {}
    for download in downloads:
        counts[download.kind] = counts.get(download.kind, 0) + 1
    return counts
