"""One fraud pipeline run shared by the fraud and governance modules: a whole fraud run is the suite's
most expensive step, and both modules start from the same first push on the same simulated data."""
from __future__ import annotations

import pytest

from tests.e2e.fraud_workspace import FraudWorkspace, make_fraud_workspace


@pytest.fixture(scope="session")
def fraud_workspace(tmp_path_factory: pytest.TempPathFactory) -> FraudWorkspace:
    return make_fraud_workspace(tmp_path_factory.mktemp("fraud"))
