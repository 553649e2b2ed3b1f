"""Epsilon matches dp_accounting and published reference values; the budget check names both numbers."""

from __future__ import annotations

import math

import dp_accounting
import pytest

from models.common.privacy_accounting import (
    PrivacyBudgetExceeded,
    check_privacy_budget,
    compute_epsilon,
    sampling_probability,
    steps_per_epoch,
)


def test_breast_cancer_setting_matches_reference_values() -> None:
    """455 examples, batch 32, 2 epochs, z = 1.1, delta = 1e-5: eps 2.89 (RDP) and 2.43 (PLD)."""
    steps = 2 * steps_per_epoch(455, 32)
    q = sampling_probability(32, 455)
    assert steps == 28
    rdp = compute_epsilon(steps=steps, sampling_probability=q, noise_multiplier=1.1, delta=1e-5)
    pld = compute_epsilon(
        steps=steps, sampling_probability=q, noise_multiplier=1.1, delta=1e-5, accountant="pld"
    )
    assert rdp == pytest.approx(2.89, abs=0.005)
    assert pld == pytest.approx(2.43, abs=0.005)


# 20 epochs of 455/32 = 14.2 batches is 285 steps; 15 epochs of 60000 // 256 = 234 batches.
@pytest.mark.parametrize(("n", "batch", "steps", "expected"), [(455, 32, 285, 7.57), (60000, 256, 3510, 1.28)])
def test_rdp_matches_dp_accounting_directly(n: int, batch: int, steps: int, expected: float) -> None:
    q = batch / n
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(1.1)), steps
        )
    )
    ours = compute_epsilon(steps=steps, sampling_probability=q, noise_multiplier=1.1, delta=1e-5)
    assert ours == accountant.get_epsilon(1e-5)
    assert ours == pytest.approx(expected, abs=0.005)


def test_epsilon_grows_with_steps() -> None:
    values = [
        compute_epsilon(steps=s, sampling_probability=0.05, noise_multiplier=1.0, delta=1e-5)
        for s in (0, 10, 100, 1000)
    ]
    assert values[0] == 0.0
    assert values == sorted(values) and len(set(values)) == 4


def test_no_noise_means_no_guarantee() -> None:
    assert compute_epsilon(steps=1, sampling_probability=0.1, noise_multiplier=0.0, delta=1e-5) == math.inf
    with pytest.raises(PrivacyBudgetExceeded, match="epsilon = inf > max_epsilon = 10"):
        check_privacy_budget(math.inf, 10.0, 1e-5)


def test_exceeding_the_budget_raises_with_both_numbers() -> None:
    epsilon = compute_epsilon(steps=28, sampling_probability=32 / 455, noise_multiplier=1.1, delta=1e-5)
    check_privacy_budget(epsilon, max_epsilon=3.0, delta=1e-5)  # 2.89 is within budget
    with pytest.raises(PrivacyBudgetExceeded) as raised:
        check_privacy_budget(epsilon, max_epsilon=2.5, delta=1e-5)
    error = raised.value
    assert (error.epsilon, error.max_epsilon, error.delta) == (epsilon, 2.5, 1e-5)
    assert "epsilon = 2.887 > max_epsilon = 2.5" in str(error)
    assert "delta = 1e-05, RDP accounting" in str(error)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delta": 0.0}, "delta must be in"),
        ({"sampling_probability": 1.5}, "sampling_probability must be in"),
        ({"accountant": "moments"}, "allowed: rdp, pld"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs: dict, message: str) -> None:
    arguments = {"steps": 10, "sampling_probability": 0.1, "noise_multiplier": 1.0, "delta": 1e-5}
    with pytest.raises(ValueError, match=message):
        compute_epsilon(**{**arguments, **kwargs})


def test_batch_larger_than_data_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds the 100 training examples"):
        sampling_probability(256, 100)
