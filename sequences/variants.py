"""Sticky, deterministic A/B assignment.

A lead's arm for a step is a pure function of (lead, sequence, step) and the step's weights: the
same lead always lands in the same arm, across re-runs and across dispatchers, without a lookup.
The dispatcher still stores each assignment, so a later change of weights (a promotion) only
affects leads that were not yet assigned.
"""

from __future__ import annotations

import hashlib

from sequences.schema import Sequence, Step

HOLDOUT = "holdout"


def experiment_step(sequence: Sequence, step: Step) -> str:
    """The step that names the experiment ``step`` belongs to: the first step of the sequence with
    the same arm ids. An offer and its reminders thus share one arm per lead (a lead held out at
    the offer is held out of the reminders too)."""
    arms = sorted(v.id for v in step.variants)
    for candidate in sequence.steps:
        if sorted(v.id for v in candidate.variants) == arms:
            return candidate.id
    return step.id


def bucket(lead_key: str, sequence_name: str, step_id: str) -> float:
    """A uniform number in [0, 100) derived from the lead and the step."""
    digest = hashlib.blake2b(f"{lead_key}|{sequence_name}|{step_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100.0


def assign_variant(
    step: Step, *, lead_key: str, sequence_name: str, experiment: str | None = None
) -> str | None:
    """The variant id for this lead, ``"holdout"`` for the control group, or None without variants.
    ``experiment`` (see ``experiment_step``) keys the draw; it defaults to the step itself."""
    if not step.variants:
        return None
    point = bucket(lead_key, sequence_name, experiment or step.id)
    edge = 0.0
    for variant in step.variants:
        edge += variant.weight
        if point < edge:
            return variant.id
    return HOLDOUT if step.holdout else step.variants[-1].id
