"""Spirale's HTTP API (FastAPI): ``create_app(settings)`` builds it, ``spirale api`` serves it."""

from __future__ import annotations

from spirale.api.context import AcceptedSubmission, StartIntake

__all__ = ["AcceptedSubmission", "StartIntake"]
