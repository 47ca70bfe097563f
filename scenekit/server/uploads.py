"""Uploaded conditioning images and videos: stored in the project under `assets/uploads/` by content hash.

The type is read from the file's first bytes (not from what the client says): PNG, JPEG and WebP images,
MP4/QuickTime and WebM/Matroska videos; each kind has its size limit (`Limits`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from scenekit.server.limits import Limits

UPLOADS = Path("assets") / "uploads"
_SNIFF = 16


class UploadRejected(Exception):
    """An upload of a type that is not allowed, empty, or over its limit; `status` is the HTTP status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    path: str
    """Relative to the project: what a spec's `conditioning` names (a spec at the project's top level)."""
    sha256: str
    size: int
    kind: str
    """`image` or `video`."""


def sniff(head: bytes) -> tuple[str, str] | None:
    """(kind, file suffix) from a file's first bytes; None for any other type."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", ".jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", ".webp"
    if head[4:8] == b"ftyp":
        return "video", ".mov" if head[8:10] == b"qt" else ".mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", ".webm"
    return None


async def store_upload(project: Path, chunks: AsyncIterator[bytes], limits: Limits) -> Upload:
    """Stream an upload to a temp file in the uploads folder while hashing it, then name it by its hash."""
    folder = project / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".upload-{secrets.token_hex(8)}.tmp"
    digest = hashlib.sha256()
    head, size, kind, suffix = b"", 0, "", ""
    try:
        with open(temp, "xb") as handle:
            async for chunk in chunks:
                if not kind:
                    head += chunk
                    if len(head) < _SNIFF:
                        continue
                    kind, suffix = _kind(head)
                    chunk, head = head, b""
                size += len(chunk)
                limit = limits.image if kind == "image" else limits.video
                if size > limit:
                    raise UploadRejected(f"an uploaded {kind} may be at most {limit} bytes", 413)
                digest.update(chunk)
                handle.write(chunk)
            if not kind:
                if not head:
                    raise UploadRejected("the upload is empty", 400)
                kind, suffix = _kind(head)
                digest.update(head)
                handle.write(head)
                size = len(head)
        sha = digest.hexdigest()
        target = folder / f"{sha}{suffix}"
        os.replace(temp, target)
        return Upload((UPLOADS / target.name).as_posix(), sha, size, kind)
    finally:
        temp.unlink(missing_ok=True)


def _kind(head: bytes) -> tuple[str, str]:
    found = sniff(head)
    if found is None:
        raise UploadRejected("only PNG, JPEG or WebP images and MP4, QuickTime or WebM videos can be uploaded", 415)
    return found
