"""Cache entries finished in the background, so the next node's GPU work overlaps this node's disk work."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from scenekit.cache.store import StagedEntry
from scenekit.errors import RenderError

DeferredWrite = tuple[str, Callable[[Path], None]]


class EntryWriter:
    """Runs the writes an operation deferred (`RunContext.keep`), then commits the entry, one entry at a time."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scenekit-cache-writer")
        self._pending: list[tuple[str, Future[Path]]] = []

    def submit(self, staged: StagedEntry, writes: list[DeferredWrite]) -> Callable[[], Path]:
        """Queue the entry; returns a function that waits for it and gives its folder."""
        future = self._pool.submit(_finish, staged, writes)
        self._pending.append((staged.node, future))
        return lambda: _folder(staged.node, future)

    def check(self) -> None:
        """Raise RenderError now if an entry already failed (so no more work is done in vain); forget the
        entries committed so far."""
        done = [(node, future) for node, future in self._pending if future.done()]
        for node, future in done:
            _folder(node, future)
        self._pending = [item for item in self._pending if item not in done]

    def drain(self) -> None:
        """Wait until every queued entry is committed; raises RenderError for the first that failed."""
        for node, future in self._pending:
            _folder(node, future)
        self._pending.clear()

    def close(self) -> None:
        """Finish what is queued (committed entries are valid even when the render stops) and stop the thread."""
        self._pool.shutdown(wait=True)


def _finish(staged: StagedEntry, writes: list[DeferredWrite]) -> Path:
    try:
        for name, write in writes:
            write(staged.workdir / name)
    except BaseException:
        staged.discard()
        raise
    return staged.commit()


def _folder(node: str, future: Future[Path]) -> Path:
    try:
        return future.result()
    except Exception as exc:
        raise RenderError(f"{node}: writing its cache entry failed: {exc}") from exc
