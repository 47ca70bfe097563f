"""H.264 round trip of conditioning frames, so they carry the compression the model was trained on."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np


def crf_compress(frames: np.ndarray, crf: int) -> np.ndarray:
    """Encode (N, H, W, 3) uint8 frames with libx264 at `crf` (yuv420p) and decode them back.

    Odd sizes are padded by one pixel for the encoder and cropped back afterwards.
    """
    if crf <= 0:
        return frames
    count, height, width, _ = frames.shape
    padded = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(24), options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = padded.shape[2], padded.shape[1], "yuv420p"
        for index, frame in enumerate(padded):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = index
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        decoded = [f.to_ndarray(format="rgb24")[:height, :width] for f in container.decode(video=0)]
    if len(decoded) != count:
        raise RuntimeError(f"CRF round trip returned {len(decoded)} frames for {count}")
    return np.stack(decoded)
