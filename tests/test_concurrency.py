"""Several renders on one cache: all succeed, and no node is computed twice (a key is computed under its
lock; whoever waited reads the entry its holder committed)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from scenekit.cache import CacheStore, StagedEntry
from scenekit.cache.locks import KeyLock

from conftest import Project

SCENE = """
    scenekit: 1
    defaults: {size: 64x64, fps: 12}
    clips:
      - {id: a, prompt: "first", frames: 9}
      - {id: b, prompt: "second", frames: 9, transition: crossfade}
      - {id: c, continue: b, overlap: 9, prompt: "third", frames: 9}
    output: {file: out.mp4, preset: ultrafast}
"""

WORKER = """
import json, sys, time
from pathlib import Path
from scenekit.engine.events import SilentEvents
from scenekit.engine.session import RenderOptions, prepare, render

spec, cache, variant, go = sys.argv[1:]
prepared = prepare(Path(spec), RenderOptions(cache_dir=Path(cache), output_variant=variant))
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.001)
print(json.dumps(render(prepared, SilentEvents()).ran), flush=True)
"""

KEY = "ab" * 32


def test_concurrent_renders_of_one_spec_on_a_cold_cache_all_succeed_and_compute_each_node_once(project: Project):
    project.write(SCENE)
    go = project.root / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(project.spec), str(project.cache), f"p{i}", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for worker in workers:
        assert worker.stdout.readline() == "ready\n", worker.communicate()[1]
    go.touch()  # all start rendering at once
    ran: Counter[str] = Counter()
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr
        ran.update(json.loads(stdout))
    nodes = {node.id for node in project.prepare().graph.ordered()}
    assert ran == Counter(nodes)  # every node ran in exactly one of the processes
    outputs = {(project.root / f"out.p{i}.mp4").read_bytes() for i in range(3)}
    assert len(outputs) == 1
    assert not list((project.cache / "tmp").iterdir()) and not list((project.cache / "locks").iterdir())


def test_a_claim_waits_for_the_lock_then_reads_the_entry_its_holder_committed(tmp_path: Path, caplog):
    holder, waiter = CacheStore(tmp_path), CacheStore(tmp_path)
    staged = holder.claim(KEY, op="test", node="n")
    assert isinstance(staged, StagedEntry)
    (staged.workdir / "out.bin").write_bytes(b"result")
    got: list[object] = []
    with caplog.at_level(logging.INFO, logger="scenekit"):
        thread = threading.Thread(target=lambda: got.append(waiter.claim(KEY, op="test", node="n")))
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive() and not got  # waiting for the lock
        folder = staged.commit()
        thread.join(5)
    assert got == [folder] and (folder / "out.bin").read_bytes() == b"result"
    assert "waiting for n: another render holds its lock" in caplog.text


def test_a_commit_keeps_an_intact_entry_others_may_be_reading(tmp_path: Path):
    """A process that computed a key without its lock (or lost the race) discards its own copy: the
    committed entry, which others may be reading, stays where it is."""
    store = CacheStore(tmp_path)
    first = store.claim(KEY, op="test", node="n")
    (first.workdir / "out.bin").write_bytes(b"result")
    folder = first.commit()
    reading = (folder / "out.bin").open("rb")
    inode = (folder / "out.bin").stat().st_ino
    late_dir = tmp_path / "tmp" / f"{KEY}.1.late"
    late_dir.mkdir()
    (late_dir / "out.bin").write_bytes(b"result")
    late = StagedEntry(store, late_dir, KEY, "test", "n", time.time(), KeyLock(tmp_path / "locks" / "other.lock"))
    assert late.commit() == folder
    assert (folder / "out.bin").stat().st_ino == inode and reading.read() == b"result"
    assert not late_dir.exists()
    reading.close()
