"""A run's log: file-descriptor output (C++ logging, child processes) and Python logging go to the file."""
from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys
from pathlib import Path

from absl import logging as absl_logging

from pipeline.run_log import logs_folder, name_after_run, output_to, started_log


def test_descriptor_and_logging_output_go_to_the_log_and_the_terminal_gets_it_back(tmp_path: Path,
                                                                                   capfd) -> None:
    log = tmp_path / "logs" / "run.log"
    verbosity = absl_logging.get_verbosity()
    with output_to(log) as terminal:
        os.write(2, b"written on descriptor 2\n")
        subprocess.run([sys.executable, "-c", "import sys; print('from a child'); print('child err', file=sys.stderr)"],
                       check=True)
        absl_logging.info("an absl INFO record")
        logging.getLogger("apache_beam.x").info("a Beam INFO record")
        terminal.write("progress line\n")
    print("after the run")
    text = log.read_text()
    for line in ("written on descriptor 2", "from a child", "child err", "an absl INFO record", "a Beam INFO record"):
        assert line in text
    assert "progress line" not in text and "after the run" not in text
    out, err = capfd.readouterr()
    assert "progress line" in out and "after the run" in out and "from a child" not in out + err
    assert absl_logging.get_verbosity() == verbosity  # restored


def test_the_log_takes_the_run_id_only_if_the_run_is_this_one(tmp_path: Path) -> None:
    began = datetime.datetime(2026, 12, 7, 8, 0, 0)
    root = tmp_path / "outputs" / "uc" / "pipeline"
    log = started_log(root, began)
    assert log.parent == logs_folder(root) == tmp_path / "outputs" / "uc" / "logs"
    log.parent.mkdir(parents=True)
    log.write_text("x")
    assert name_after_run(log, "2026-12-07T07:59:59.000001", began) == log  # an earlier run's id
    assert name_after_run(log, None, began) == log  # nothing recorded
    renamed = name_after_run(log, "2026-12-07T08:00:03.123456", began)
    assert renamed == log.parent / "2026-12-07T08:00:03.123456.log" and renamed.read_text() == "x"
    assert not log.exists()
