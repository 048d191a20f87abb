"""The ``audience:`` block: validation messages pin what a marketer reads."""

from __future__ import annotations

import pytest

from sequences.audience import AudienceSpec, parse_audience, validate_audience
from sequences.catalog import SequenceCatalog
from spirale.errors import SequenceError


def test_the_shipped_reactivation_audience_is_valid(catalog: SequenceCatalog) -> None:
    spec = parse_audience(catalog.get("reactivation-offer").audience)
    assert (spec.dormant_days, spec.min_messages_without_click, spec.former_customers_inactive_days) == (
        120,
        3,
        365,
    )
    assert spec.exclude_contacted_within_days == 14
    assert spec.excluded_statuses == {"hot", "disqualified"}


@pytest.mark.parametrize(
    ("block", "errors"),
    [
        ({"dormant_dys": 90}, ["audience.dormant_dys: unknown key (did you mean 'dormant_days'?)"]),
        ({"dormant_days": 0}, ["audience.dormant_days: Input should be greater than or equal to 1"]),
        (
            {"dormant_days": 90, "exclude_statuses": ["vip"]},
            [
                "audience.exclude_statuses: unknown status 'vip': expected one of hot, warm, cold, customer, "
                "former_customer, disqualified"
            ],
        ),
        (
            {"exclude_contacted_within_days": 7},
            [
                "audience: select someone: set at least one of dormant_days, min_messages_without_click, "
                "former_customers_inactive_days, customer_class"
            ],
        ),
        (["dormant_days"], ["audience: expected a mapping of selection criteria (e.g. dormant_days: 120)"]),
        (
            {"dormant_days": 90, "max_leads": "many"},
            ["audience.max_leads: Input should be a valid integer, unable to parse string as an integer"],
        ),
    ],
)
def test_errors_name_the_faulty_key(block: object, errors: list[str]) -> None:
    assert validate_audience(block) == errors


def test_a_single_status_is_accepted_and_always_excluded_ones_stay() -> None:
    spec = AudienceSpec.model_validate({"dormant_days": 60, "exclude_statuses": "customer"})
    assert spec.exclude_statuses == ("customer",)
    assert spec.excluded_statuses == {"hot", "disqualified", "customer"}


def test_parse_audience_raises_a_sequence_error_listing_every_problem() -> None:
    with pytest.raises(
        SequenceError, match=r"sequence 'promo': audience\.dormant_days: .*; audience\.max_leads: "
    ):
        parse_audience({"dormant_days": -1, "max_leads": 0}, sequence="promo")
