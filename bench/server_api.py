"""The HTTP API under load, against a real uvicorn server on 127.0.0.1 (preview model, no GPU needed):

- requests per second for `GET /renders/{id}` (one client, then `--workers` clients at once);
- the time from `POST /renders` to its first node starting (target < 100 ms with warm models), for a spec
  on `--model` (default `preview`; on a GPU machine name a real profile whose weights are present);
- SSE fan-out: `--clients` streams on one render while it runs; every client must get every event, and the
  lag from an event being recorded to a client reading it is reported.

The server runs in a process of its own (as `scenekit serve` does), so the clients' threads do not share its GIL.

Run: python bench/server_api.py [--clients 50] [--requests 1000] [--workers 8] [--model preview]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

from scenekit.server.app import ServerConfig, create_app

TOKEN = "bench"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def spec(name: str, seconds: float, model: str) -> str:
    return (
        f"scenekit: 1\nname: {name}\ndefaults: {{model: {model}, size: 384x256, fps: 24}}\nclips:\n"
        f"  - {{id: a, prompt: 'the sea, {name}', duration: {seconds}s}}\n"
        f"  - {{id: b, prompt: 'the cliff, {name}', duration: {seconds}s, transition: crossfade}}\n"
        f"output: {{file: renders/{name}.mp4, preset: ultrafast}}\n"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_done(client: httpx.Client, render_id: str) -> None:
    while client.get(f"/renders/{render_id}").json()["state"] in ("queued", "running"):
        time.sleep(0.02)


async def read_streams(base: str, render_id: str, clients: int) -> tuple[list[float], list[int]]:
    """`clients` SSE streams on one render, read in one event loop (as a browser's would be, not 50 threads)."""
    lags: list[float] = []

    async def one(client: httpx.AsyncClient) -> int:
        count = 0
        async with client.stream("GET", f"{base}/renders/{render_id}/events", headers=AUTH) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    lags.append(time.time() - json.loads(line[6:])["time"])
                    count += 1
        return count

    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        counts = await asyncio.gather(*(one(client) for _ in range(clients)))
    return lags, list(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--model", default="preview")
    parser.add_argument("--serve", nargs=2, metavar=("FOLDER", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        app = create_app(ServerConfig(Path(args.serve[0]), TOKEN))
        uvicorn.run(app, host="127.0.0.1", port=int(args.serve[1]), log_level="warning")
        return
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", folder, str(port)])
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                httpx.get(f"{base}/health")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        client = httpx.Client(base_url=base, headers=AUTH, timeout=60)

        warm = client.post("/renders", json={"spec": spec("warm", 0.5, args.model)}).json()["id"]
        wait_done(client, warm)  # code paths (and a real profile's models) are loaded now

        started = time.perf_counter()
        for _ in range(args.requests):
            client.get(f"/renders/{warm}").raise_for_status()
        single = args.requests / (time.perf_counter() - started)
        with ThreadPoolExecutor(args.workers) as pool:
            clients = [httpx.Client(base_url=base, headers=AUTH, timeout=60) for _ in range(args.workers)]
            started = time.perf_counter()
            list(pool.map(lambda i: clients[i % args.workers].get(f"/renders/{warm}"), range(args.requests)))
            parallel = args.requests / (time.perf_counter() - started)
        print(
            f"GET /renders/{{id}}: {single:.0f} requests/s (1 client), {parallel:.0f} requests/s ({args.workers} clients)"
        )

        latencies, answered = [], []
        for index in range(5):
            posted = time.time()
            render_id = client.post("/renders", json={"spec": spec(f"first{index}", 0.5, args.model)}).json()["id"]
            answered.append((time.time() - posted) * 1000)
            wait_done(client, render_id)
            events = httpx.get(f"{base}/renders/{render_id}/events", headers=AUTH, timeout=60).text
            first = next(
                json.loads(block.split("data: ", 1)[1])["time"]
                for block in events.split("\n\n")
                if block.startswith("id:") and "event: node_started" in block
            )
            latencies.append((first - posted) * 1000)
        print(
            f"POST /renders to the first node started: median {statistics.median(latencies):.1f} ms, "
            f"max {max(latencies):.1f} ms (5 renders, 2 clips each; the POST answered in median "
            f"{statistics.median(answered):.1f} ms: validating and planning)"
        )

        render_id = client.post("/renders", json={"spec": spec("fanout", 4, args.model)}).json()["id"]
        lags, counts = asyncio.run(read_streams(base, render_id, args.clients))
        lags.sort()
        print(
            f"SSE fan-out to {args.clients} clients: {min(counts)}-{max(counts)} events each; lag from event to client "
            f"median {statistics.median(lags) * 1000:.1f} ms, p95 {lags[int(0.95 * len(lags))] * 1000:.1f} ms, "
            f"max {lags[-1] * 1000:.1f} ms"
        )
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
