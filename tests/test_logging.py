"""Logging: `-v` / `$SCENEKIT_LOG` set the level once; what used to pass silently is logged."""

from __future__ import annotations

import logging
import os

import pytest
from rich.logging import RichHandler

from scenekit.logs import configure_logging

from conftest import Project

SCENE = """
    scenekit: 1
    defaults: {size: 64x64, fps: 12}
    clips:
      - {id: a, prompt: "first", frames: 9}
    output: {file: out.mp4, preset: ultrafast}
"""


@pytest.fixture
def scenekit_logger():
    """The `scenekit` logger, put back as it was afterwards."""
    logger = logging.getLogger("scenekit")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.mark.parametrize(
    ("verbosity", "setting", "level"),
    [
        (0, None, logging.WARNING),
        (1, None, logging.INFO),
        (2, None, logging.DEBUG),
        (0, "debug", logging.DEBUG),
        (0, "INFO", logging.INFO),
        (2, "warning", logging.DEBUG),
    ],
)
def test_the_more_verbose_of_v_and_scenekit_log_wins(scenekit_logger, monkeypatch, verbosity, setting, level):
    if setting is None:
        monkeypatch.delenv("SCENEKIT_LOG", raising=False)
    else:
        monkeypatch.setenv("SCENEKIT_LOG", setting)
    configure_logging(verbosity)
    configure_logging(verbosity)  # configuring again replaces the handler
    assert scenekit_logger.level == level
    assert len([h for h in scenekit_logger.handlers if isinstance(h, RichHandler)]) == 1


def test_an_unknown_scenekit_log_is_reported_not_fatal(scenekit_logger, monkeypatch, capsys):
    monkeypatch.setenv("SCENEKIT_LOG", "loud")
    configure_logging(0)
    assert scenekit_logger.level == logging.WARNING
    assert "SCENEKIT_LOG=loud is not a level" in capsys.readouterr().err


def test_corrupt_entries_stale_work_and_unreadable_manifests_are_logged(project: Project, caplog):
    project.write(SCENE)
    first = project.render()
    key = project.prepare().graph.node("a/generate").key
    frames = next(project.cache.glob(f"objects/*/{key}/frames.*"))
    frames.write_bytes(frames.read_bytes()[:-1])
    for node in ("a/segment", "stitch"):
        next(project.cache.glob(f"objects/*/{project.prepare().graph.node(node).key}/entry.json")).unlink()
    (project.cache / "tmp" / f"{key}.99999999.deadbeef").mkdir()
    first.manifest.write_text("{not json")
    with caplog.at_level(logging.INFO, logger="scenekit"):
        assert sorted(project.render().ran) == ["a/generate", "a/segment", "stitch"]
    assert f"cache entry {frames.parent} is corrupt" in caplog.text
    assert "removed 1 stale work folder(s)" in caplog.text
    assert f"{first.manifest}: not a readable manifest" in caplog.text
    assert os.path.isdir(project.cache / "tmp")
