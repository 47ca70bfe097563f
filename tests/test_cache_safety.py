"""Writes, cleanup and removal never follow a link out of the project or the cache; an entry that keeps
coming back corrupt fails the render instead of looping."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scenekit.cache import CacheStore
from scenekit.errors import RenderError
from scenekit.fsutil import atomic_copy, atomic_write_text
from scenekit.hashing import file_sha256

from conftest import Project

SCENE = """
    scenekit: 1
    defaults: {size: 64x64, fps: 12}
    clips:
      - {id: a, prompt: "first", frames: 9}
      - {id: b, prompt: "second", frames: 9}
    output: {file: out.mp4, preset: ultrafast}
"""


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the project holding a file that must survive."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "precious.txt").write_text("keep me")
    return folder


def test_a_render_never_writes_through_links_planted_at_the_old_temp_names(project: Project, outside: Path):
    """The output and manifest were written through `.NAME.<pid>.tmp`, opened following links."""
    project.write(SCENE)
    victims = [outside / "victim-video", outside / "victim-manifest"]
    for name, victim in zip(("out.mp4", "out.manifest.json"), victims, strict=True):
        victim.write_text("untouched")
        (project.root / f".{name}.{os.getpid()}.tmp").symlink_to(victim)
    result = project.render()
    assert [victim.read_text() for victim in victims] == ["untouched", "untouched"]
    assert result.output.stat().st_size > 1000
    assert json.loads(result.manifest.read_text())["output"]["frames"] == 18


def test_atomic_writes_create_their_temp_file_exclusively_and_replace_a_link_at_the_target(
    tmp_path: Path, outside: Path, monkeypatch
):
    """A link planted at the very name the temp file is about to get is not written through, nor is
    a link at the target: the rename replaces the link itself."""
    import secrets

    names = iter(["guessed", "fresh", "guessed", "fresh"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(names))
    for name in ("a.txt", "b.txt"):
        (tmp_path / f".{name}.guessed.tmp").symlink_to(outside / "precious.txt")
    (tmp_path / "b.txt").symlink_to(outside / "precious.txt")
    atomic_write_text(tmp_path / "a.txt", "new text")
    atomic_copy(tmp_path / "a.txt", tmp_path / "b.txt")
    assert (tmp_path / "b.txt").read_text() == "new text" and not (tmp_path / "b.txt").is_symlink()
    assert (outside / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.txt.guessed.tmp", ".b.txt.guessed.tmp", "a.txt", "b.txt"]


def test_stale_work_cleanup_does_not_follow_a_linked_tmp_folder(project: Project, outside: Path):
    project.write(SCENE)
    (outside / f"{'0' * 64}.99999999.deadbeef").mkdir()  # looks like a dead process's work folder
    (outside / "removed.junk.1").mkdir()
    project.cache.mkdir()
    (project.cache / "tmp").symlink_to(outside, target_is_directory=True)
    project.render()
    assert sorted(p.name for p in outside.iterdir()) == sorted(
        [f"{'0' * 64}.99999999.deadbeef", "precious.txt", "removed.junk.1"]
    )
    assert (project.cache / "tmp").is_dir() and not (project.cache / "tmp").is_symlink()


def test_links_inside_tmp_are_removed_not_followed(project: Project, outside: Path):
    store = CacheStore(project.cache)
    (project.cache / "tmp").mkdir(parents=True)
    (project.cache / "tmp" / "x.99999999.link").symlink_to(outside, target_is_directory=True)
    assert store.clean_stale() == 1
    assert (outside / "precious.txt").read_text() == "keep me"
    assert not list((project.cache / "tmp").iterdir())


def test_prune_and_reads_do_not_follow_links_out_of_the_cache(project: Project, outside: Path):
    """A shard folder or an entry folder that is a link to an entry kept elsewhere is neither listed,
    read nor deleted; removing the entry removes the link only."""
    project.write(SCENE)
    project.render()
    store = CacheStore(project.cache)
    key = project.prepare().graph.node("a/generate").key
    real = store.entry_dir(key)
    kept = outside / "entry"
    os.rename(real, kept)
    real.symlink_to(kept, target_is_directory=True)
    assert key not in {e.key for e in store.entries()}
    assert not store.has(key) and store.open(key) is None
    store.remove(key)
    assert not os.path.lexists(real) and (kept / "entry.json").is_file()

    shard = next(f"{i:02x}" for i in range(256) if not (project.cache / "objects" / f"{i:02x}").exists())
    (project.cache / "objects" / shard).symlink_to(outside, target_is_directory=True)
    planted = shard * 32
    (outside / planted).mkdir()
    (outside / planted / "entry.json").write_text(json.dumps({"key": planted, "files": {}}))
    assert planted not in {e.key for e in store.entries()}
    assert not store.has(planted)
    store.remove(planted)
    assert (outside / planted / "entry.json").is_file() and (outside / "precious.txt").read_text() == "keep me"


def test_an_entry_naming_files_outside_itself_is_corrupt(project: Project, outside: Path):
    project.write(SCENE)
    project.render()
    store = CacheStore(project.cache)
    key = project.prepare().graph.node("a/generate").key
    entry_file = store.entry_dir(key) / "entry.json"
    entry = json.loads(entry_file.read_text())
    precious = outside / "precious.txt"
    entry["files"][os.path.relpath(precious, entry_file.parent)] = {"size": 7, "sha256": file_sha256(precious)}
    entry_file.write_text(json.dumps(entry))
    assert store.open(key) is None
    assert not store.entry_dir(key).exists()


@pytest.mark.parametrize("node", ["stitch", "a/generate"])
def test_an_entry_that_keeps_coming_back_corrupt_fails_the_render_naming_it(project: Project, monkeypatch, node: str):
    """A corrupt entry that cannot be removed (a read-only cache) is seen again and again: the render
    gives up after a bounded number of attempts, naming the node and the entry."""
    project.write(SCENE)
    project.render()
    graph = project.prepare().graph
    key = graph.node(node).key
    frames = next(p for p in CacheStore(project.cache).entry_dir(key).iterdir() if p.name != "entry.json")
    data = frames.read_bytes()
    frames.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    if node != "stitch":  # a/generate is then read from the cache by its segment
        for rerun in ("a/segment", "stitch"):
            CacheStore(project.cache).remove(graph.node(rerun).key)

    def read_only(self, key):
        raise PermissionError(13, "Permission denied", str(self.entry_dir(key)))

    monkeypatch.setattr(CacheStore, "_drop", read_only)
    with pytest.raises(RenderError, match=rf"{node}: its cache entry .*{key}.* still corrupt after 2 attempts"):
        project.render()
