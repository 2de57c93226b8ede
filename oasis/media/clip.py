"""Short test clips encoded with PyAV (tests and bench/short_video.py).

``make_clip(path, seconds, kbps)`` writes an H.264 video of moving test patterns, either
MP4 with a leading moov (``movflags=faststart``, so a player can start from the first
bytes while the rest downloads) or MPEG-TS (by the path's suffix). Deterministic for a seed.
"""

from __future__ import annotations

import av
import numpy as np


def make_clip(path: str, seconds: float = 3.0, kbps: int = 2500, *, size: tuple[int, int] = (640, 360),
              fps: int = 25, gop: int = 25, seed: int = 1) -> None:
    w, h = size
    fmt = "mpegts" if path.endswith(".ts") else "mp4"
    opts = {"movflags": "faststart"} if fmt == "mp4" else {}
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    with av.open(path, "w", format=fmt, options=opts) as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.bit_rate = kbps * 1000
        st.options = {"preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
                      "x264-params": f"nal-hrd=cbr:vbv-maxrate={kbps}:vbv-bufsize={kbps}:bitrate={kbps}"}
        for i in range(int(seconds * fps)):
            img = np.roll(noise, i * 7, axis=1)
            img[: h // 4, : w // 4] = (i * 9) % 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
