"""How scoring rules match what a lead typed: job titles and industries compared word by word,
without case or accents ("Étudiante" matches ``étudiante``, "DIRECTEUR commercial" matches
``directeur commercial``), and email domains compared against patterns (``*.edu``,
``univ-*.fr``, ``etudiant.*``) on the domain and each of its parent domains."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from fnmatch import fnmatchcase
from functools import lru_cache

_WORD = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Lowercase ``text`` and strip its accents (``"Gérante"`` -> ``"gerante"``)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def words(text: str) -> tuple[str, ...]:
    """The folded words of ``text``."""
    return tuple(_WORD.findall(fold(text)))


def has_phrase(text: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words (``intern`` does not match
    ``international``)."""
    needle, haystack = words(phrase), words(text)
    if not needle:
        return False
    size = len(needle)
    return any(haystack[i : i + size] == needle for i in range(len(haystack) - size + 1))


def first_phrase(text: str, phrases: Iterable[str]) -> str | None:
    """The first of ``phrases`` found in ``text``, or ``None``."""
    return next((phrase for phrase in phrases if has_phrase(text, phrase)), None)


def email_domain(email: str) -> str:
    """The lowercased domain of an address (``""`` when there is none)."""
    return email.rpartition("@")[2].strip().lower().rstrip(".")


def domain_pattern(domain: str, patterns: Iterable[str]) -> str | None:
    """The first pattern matching ``domain`` or one of its parents (``concurrent.fr`` matches
    ``mail.concurrent.fr``; ``univ-*.fr`` matches ``etu.univ-lyon2.fr``), or ``None``."""
    labels = domain.split(".")
    candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)] or [domain]
    for pattern in patterns:
        folded = pattern.lower()
        if any(fnmatchcase(candidate, folded) for candidate in candidates):
            return pattern
    return None
