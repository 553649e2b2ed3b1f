"""The DVC version of input data, read from what real DVC (3, in .venv-airflow) wrote: ``dvc add`` of a span
folder, a stage out of ``dvc repro``, and a file changed after ``dvc add``, which must not pass as that version."""
from __future__ import annotations

from pathlib import Path

import pytest
from airflow_env import dvc

from cli.data import checkout_main
from privacy.data_version import DataVersionError, read_data_version


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dvc_project")
    dvc(root, "init", "--no-scm", "-q")
    spans = root / "data" / "spans"
    for span, rows in ((1, "a,b\n1,2\n"), (2, "a,b\n3,4\n5,6\n")):
        (spans / f"span-{span:04d}").mkdir(parents=True)
        (spans / f"span-{span:04d}" / "part.csv").write_text(rows)
    (spans / "span-0001-extra.csv").write_text("a,b\n7,8\n")  # sorts between span-0001/ and span-0002/ by name
    dvc(root, "add", "-q", "data/spans")
    (root / "dvc.yaml").write_text(
        "stages:\n  make_table:\n    cmd: printf 'x\\n1\\n' > table.csv\n    outs: [table.csv]\n")
    dvc(root, "repro", "-q")
    return root


def test_dvc_add_of_a_folder_is_read_with_its_hash(project: Path) -> None:
    version = read_data_version(project / "data" / "spans")
    assert version is not None
    assert version.dvc_file.endswith("spans.dvc")
    assert version.recorded_md5.endswith(".dir")
    assert version.matches, (version.recorded_md5, version.current_md5)  # our hash is DVC's hash
    assert version.as_properties()["dvc_matches_working_copy"] == "true"


def test_a_stage_out_of_dvc_repro_is_read_from_dvc_lock(project: Path) -> None:
    version = read_data_version(project / "table.csv")
    assert version is not None and version.dvc_file.endswith("dvc.lock")
    assert version.matches and not version.recorded_md5.endswith(".dir")


def test_a_file_changed_after_dvc_add_is_not_that_version(project: Path, tmp_path: Path) -> None:
    part = project / "data" / "spans" / "span-0002" / "part.csv"
    before = part.read_text()
    part.unlink()  # DVC may link the cache; never write through to it
    part.write_text(before + "9,9\n")
    try:
        version = read_data_version(project / "data" / "spans")
        assert version is not None and not version.matches
        assert version.as_properties()["dvc_matches_working_copy"] == "false"
    finally:
        part.unlink()
        part.write_text(before)
    assert read_data_version(project / "data" / "spans").matches


def test_untracked_data_has_no_version_and_a_broken_record_is_named(project: Path) -> None:
    (project / "loose.csv").write_text("a\n1\n")
    assert read_data_version(project / "loose.csv") is None
    (project / "broken").mkdir()
    (project / "broken.dvc").write_text("outs:\n- path: broken\n  md5: abc\n")  # DVC 2's record: no hash key
    with pytest.raises(DataVersionError, match=r"broken\.dvc.*dvc add"):
        read_data_version(project / "broken")


def test_the_version_goes_onto_an_examples_artifact(project: Path) -> None:
    """What the anonymizing ExampleGen's executor records on its output (components/anonymizing_example_gen)."""
    from tfx.types import standard_artifacts

    from privacy.data_version import record_data_version

    examples = standard_artifacts.Examples()
    version = record_data_version(examples, str(project / "data" / "spans"))
    assert version is not None
    assert examples.get_string_custom_property("dvc_md5") == version.recorded_md5
    assert examples.get_string_custom_property("dvc_matches_working_copy") == "true"
    untracked = standard_artifacts.Examples()
    assert record_data_version(untracked, str(project / "loose")) is None
    assert untracked.get_string_custom_property("dvc_md5") == ""


def test_esteira_data_checkout_brings_back_the_version_a_model_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dvc(tmp_path, "init", "--no-scm", "-q")
    folder = tmp_path / "data"
    (folder / "span-0001").mkdir(parents=True)
    (folder / "span-0001" / "part.csv").write_text("a\n1\n")
    dvc(tmp_path, "add", "-q", "data")
    first = read_data_version(folder)
    assert first is not None
    (folder / "span-0001" / "part.csv").unlink()  # DVC may link the cache; never write through to it
    (folder / "span-0001" / "part.csv").write_text("a\n1\n2\n")
    dvc(tmp_path, "add", "-q", "data")
    assert read_data_version(folder).recorded_md5 != first.recorded_md5

    assert checkout_main([str(folder), "--dvc-md5", first.recorded_md5]) == 0
    assert (folder / "span-0001" / "part.csv").read_text() == "a\n1\n"
    assert read_data_version(folder).matches and first.recorded_md5 in capsys.readouterr().out

    assert checkout_main([str(tmp_path / "untracked"), "--dvc-md5", first.recorded_md5]) == 1
    assert "is not tracked by `dvc add`" in capsys.readouterr().err
