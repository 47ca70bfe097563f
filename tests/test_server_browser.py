"""The page in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright's Python package
with its executable path: no browser download) against `scenekit serve` on 127.0.0.1 in a subprocess.

It loads the page with the token, submits a tiny `preview` spec through the spec box and the Render button,
watches every node turn done, plays the video to its end (the `<video>` element's `ended` event) and saves a
screenshot of the finished page (`finished-page.png` in the test's tmp folder, and in $SCENEKIT_TEST_ARTIFACTS
when set). Skipped when Chromium or Playwright is missing (CI installs both).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')")
from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

TOKEN = "browser-test-token"
SPEC = """\
scenekit: 1
name: browser
defaults: {model: preview, size: 96x64, fps: 24}
clips:
  - {id: first, prompt: "a lighthouse", frames: 6}
  - {id: second, prompt: "a stormy sea", frames: 6}
output: {file: renders/browser.mp4, preset: ultrafast}
"""
FRAMES, FPS = 12, 24
WAIT_MS = 30_000
"""The longest any one step may take (the render takes about a second): a broken page fails, not hangs."""


class Server:
    """`scenekit serve PROJECT` on 127.0.0.1, on a port the OS picks (read back from uvicorn's log)."""

    def __init__(self, project: Path, log: Path):
        self.log = log
        self.interrupted = False
        env = {**os.environ, "SCENEKIT_API_TOKEN": TOKEN}
        env.pop("SCENEKIT_CACHE_DIR", None)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "scenekit", "serve", str(project), "--host", "127.0.0.1", "--port", "0"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def url(self) -> str:
        """The page's address, once the server listens."""
        deadline = time.monotonic() + WAIT_MS / 1000
        while time.monotonic() < deadline:
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", self.log.read_text(errors="replace"))
            if found:
                return found.group(1)
            assert self.process.poll() is None, f"scenekit serve exited:\n{self.output()}"
            time.sleep(0.05)
        raise AssertionError(f"scenekit serve did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def interrupt(self) -> None:
        """Ctrl-C, once (a second one would skip the server's shutdown): it stops while the test goes on."""
        if self.process.poll() is None and not self.interrupted:
            self.process.send_signal(signal.SIGINT)
            self.interrupted = True

    def stop(self) -> None:
        self.interrupt()
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "project").mkdir()
    started = Server(tmp_path / "project", tmp_path / "serve.log")
    try:
        yield started
    finally:
        started.stop()


def keep(page: Page, folder: Path, name: str) -> Path:
    """A screenshot of the whole page in `folder`, copied to $SCENEKIT_TEST_ARTIFACTS when it is set."""
    shot = folder / name
    page.screenshot(path=str(shot), full_page=True)
    artifacts = os.environ.get("SCENEKIT_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(artifacts) / name)
    return shot


def render_through_the_page(page: Page) -> None:
    """Type the spec, wait for the API to call it valid, press Render, wait for the render and its nodes to be
    done."""
    with page.expect_response(lambda r: r.url.endswith("/validate") and r.request.post_data_json == {"spec": SPEC}):
        page.fill("#spec", SPEC)  # the spec box checks what is typed through the API
    expect(page.locator("#spec-status")).to_have_text("valid", timeout=WAIT_MS)
    page.click("#render-button")
    expect(page.locator("#render-state .badge")).to_have_text("done", timeout=WAIT_MS)
    nodes = page.locator("#nodes tbody tr td:nth-child(1)").all_inner_texts()
    assert {"first/generate", "first/segment", "second/segment", "stitch"} <= set(nodes), nodes
    assert page.locator("#nodes tbody tr td:nth-child(2) .badge").all_inner_texts() == ["done"] * len(nodes)
    assert page.locator("#dag rect.done").count() == len(nodes)
    log = page.locator("#log").inner_text()
    for node in nodes:  # the events the page listened to live: each node started, then done
        assert -1 < log.find(f"node started {node} (") < log.find(f"node done {node} in"), log


def play_to_the_end(page: Page) -> dict:
    """Press "whole video" and wait for the player's `ended` event; what the player knew then."""
    expect(page.locator("#video")).to_be_visible(timeout=WAIT_MS)
    page.evaluate(
        """() => {
            const video = document.getElementById("video");
            video.addEventListener("ended", () => { window.played = {width: video.videoWidth,
                height: video.videoHeight, duration: video.duration, time: video.currentTime}; });
            video.addEventListener("error", () => { window.played = {error: video.error.code}; });
            video.muted = true;
        }"""
    )
    page.get_by_role("button", name="whole video").click()  # a user's click, so play() is allowed
    return page.wait_for_function("() => window.played").json_value()


def test_the_page_renders_a_spec_and_plays_its_video_to_the_end(server: Server, tmp_path: Path):
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)  # while the server starts
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        try:
            page.goto(f"{server.url()}/#token={TOKEN}")
            render_through_the_page(page)
            played = play_to_the_end(page)
            shot = keep(page, tmp_path, "finished-page.png")
        except BaseException:
            with contextlib.suppress(Exception):  # a page that cannot be shot: the first error is the one to see
                keep(page, tmp_path, "failed-page.png")
            print(f"scenekit serve's log:\n{server.output()}")
            raise
        finally:
            server.interrupt()  # both stop at once
            browser.close()
    assert (played.get("width"), played.get("height")) == (96, 64), played
    assert played["duration"] == pytest.approx(FRAMES / FPS, abs=0.05), played
    assert played["time"] == pytest.approx(played["duration"], abs=0.05), played
    assert not problems, problems
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.width == 1400
