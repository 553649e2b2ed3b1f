"""The console's parts that need no browser: chart figures, highlighting, report paths, tokens, the CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from console.access import APPROVER, REVIEWER, AccessConfigError, Roles
from console.app import _safe_next
from console.evaluation_rows import calibration, score_histogram
from console.reports import report_file, reports_of
from console.review import worse


def test_score_histogram_shares_and_calibration_bins() -> None:
    scores = np.array([0.05, 0.07, 0.55, 0.95, 1.0])
    histogram = score_histogram(scores, bins=4)
    assert histogram == {"x": [0.0, 0.25, 0.5, 0.75], "share": [0.4, 0.0, 0.2, 0.4]}
    table = calibration(scores, np.array([0, 1, 1, 1, 1]), bins=2)
    assert table["rows"] == [2, 3] and table["observed"] == [0.5, 1.0]
    assert table["predicted"] == pytest.approx([0.06, 2.5 / 3])


def test_worse_knows_which_way_a_metric_points() -> None:
    assert worse("auc", 0.90, 0.91) and not worse("auc", 0.92, 0.91)
    assert worse("loss", 0.5, 0.4) and not worse("loss", 0.3, 0.4)
    assert not worse("example_count", 10, 20) and not worse("auc", None, 0.9)


def test_report_files_are_only_the_known_report_names(tmp_path: Path) -> None:
    (tmp_path / "100").mkdir()
    (tmp_path / "100" / "lgpd_report.html").write_text("x")
    (tmp_path / "100" / "secret.txt").write_text("x")
    (tmp_path / "drift-100-200").mkdir()
    (tmp_path / "drift-100-200" / "drift_report.html").write_text("x")
    assert report_file(tmp_path, "100", "lgpd_report.html") == (tmp_path / "100" / "lgpd_report.html", True)
    assert report_file(tmp_path, "drift-100-200", "drift_report.html")[1] is False
    for folder, name in (("100", "secret.txt"), ("..", "lgpd_report.html"), ("100/..", "lgpd_report.html"),
                         ("200", "lgpd_report.html")):
        assert report_file(tmp_path, folder, name) is None
    assert [link.href for link in reports_of(tmp_path, "200")] == ["/reports/drift-100-200/drift_report.html"]
    assert [link.kind for link in reports_of(tmp_path, "100")] == ["lgpd", "drift"]


def test_roles_come_from_the_servers_token_files(tmp_path: Path) -> None:
    (tmp_path / "reviewers").write_text("rita:" + "r" * 20 + "\nboth:" + "b" * 20 + "\n")
    (tmp_path / "approvers").write_text("alan:" + "a" * 20 + "\nboth:" + "b" * 20 + "\n")
    roles = Roles(str(tmp_path / "reviewers"), str(tmp_path / "approvers"))
    assert (roles.caller("r" * 20).name, roles.caller("r" * 20).role) == ("rita", REVIEWER)
    assert roles.caller("a" * 20).role == APPROVER and roles.caller("b" * 20).role == APPROVER
    assert roles.caller("x" * 20) is None and roles.caller(None) is None
    with pytest.raises(AccessConfigError, match="--reviewer_tokens FILE and --approver_tokens FILE"):
        Roles(None, None)
    (tmp_path / "short").write_text("eve:short\n")
    with pytest.raises(AccessConfigError, match="at least 16 characters"):
        Roles(str(tmp_path / "short"), None)


def test_login_only_returns_to_a_local_page() -> None:
    assert _safe_next("/versions/2") == "/versions/2"
    assert _safe_next("//evil.example/x") == "/"
    assert _safe_next("https://evil.example") == "/"
    assert _safe_next(None) == "/"


def test_form_values_round_trip_through_a_tf_example_lists_included() -> None:
    from console.model_server import example_from_values, feature_kinds

    kinds = {"amount": "float_list", "history_merchant_category": "bytes_list", "timestamp": "int64_list",
             "history_channel": "bytes_list"}
    record = example_from_values({"amount": "12.5", "history_merchant_category": "food, travel",
                                  "timestamp": "1718000000", "history_channel": ""}, kinds)
    assert feature_kinds(record, label_key=None) == {
        "amount": ("float_list", "12.5"), "history_channel": ("bytes_list", ""),
        "history_merchant_category": ("bytes_list", "food, travel"), "timestamp": ("int64_list", "1718000000")}


def test_a_bad_form_value_names_the_feature() -> None:
    from console.model_server import example_from_values

    with pytest.raises(ValueError, match="feature 'amount': 'ten' is not a number"):
        example_from_values({"amount": "ten"}, {"amount": "float_list"})


def test_esteira_console_dispatches_and_names_missing_token_files(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.console import console_main
    from cli.main import COMMANDS, _load

    assert _load(COMMANDS["console"][0]) is console_main
    code = console_main(["--config", "configs/breast_cancer.yaml", "--model_config_file", "models.config"])
    assert code == 2 and "--reviewer_tokens FILE" in capsys.readouterr().err
