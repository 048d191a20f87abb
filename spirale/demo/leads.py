"""Synthetic French leads for the demo (deterministic: the same seed gives the same people)."""

from __future__ import annotations

import random
import uuid
from datetime import datetime
from typing import Any

FIRST_NAMES = (
    "Camille",
    "Léa",
    "Manon",
    "Chloé",
    "Inès",
    "Sarah",
    "Julie",
    "Emma",
    "Louise",
    "Alice",
    "Lucas",
    "Hugo",
    "Louis",
    "Gabriel",
    "Arthur",
    "Jules",
    "Nathan",
    "Thomas",
    "Paul",
    "Antoine",
)
LAST_NAMES = (
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
)
COMPANIES = (
    "Atelier Lumière",
    "Boulangeries Roux",
    "Cabinet Vauban",
    "Transports Garnier",
    "Menuiserie Alpine",
    "Imprimerie du Centre",
    "Bureau Conseil Loire",
    "Vignobles Lacroix",
    "Clinique des Lilas",
    "Agence Azur",
)
TITLES = ("Gérante", "Directeur commercial", "Responsable marketing", "Dirigeant", "Chargée de communication")
TIMEZONES = ("Europe/Paris",) * 9 + ("America/Martinique",)


def demo_leads(count: int, *, now: datetime, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` leads with realistic names and consents (most consent to email, fewer to SMS)."""
    rng = random.Random(seed)
    leads = []
    for index in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        leads.append(
            {
                "id": uuid.UUID(int=rng.getrandbits(128), version=4),
                "email": f"{first}.{last}.{index}@exemple.fr".lower().replace("é", "e").replace("è", "e"),
                "phone": f"+336{rng.randrange(10**7, 10**8)}",
                "first_name": first,
                "last_name": last,
                "company": rng.choice(COMPANIES),
                "job_title": rng.choice(TITLES),
                "country": "FR",
                "timezone": rng.choice(TIMEZONES),
                "consent_email": rng.random() < 0.95,
                "consent_email_source": "formulaire livre blanc",
                "consent_email_at": now,
                "consent_sms": rng.random() < 0.6,
                "consent_sms_source": "formulaire livre blanc",
                "consent_sms_at": now,
                "status": "warm",
                "owner": rng.choice(("alice", "bruno")),
                "source": "demo",
            }
        )
    return leads
