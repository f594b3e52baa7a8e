"""Helpers for the search API and search page tests: a loaded engine, HTTP calls, and a real headless browser.

The browser is Debian's ``chromium`` driven over the Chrome DevTools Protocol through
``--remote-debugging-pipe`` (fd 3 in, fd 4 out, NUL-terminated JSON messages): no port, no websocket library,
no browser download — only the distribution's package. The page under test talks to a real app on a free
127.0.0.1 port, and everything the tests compare the page with comes from the API or from the corpus.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from handlers.search.tantivy_backend import TantivyBackend
from tests.search_kit import CORPUS

BROWSER_ENV = "LETGO_REQUIRE_BROWSER"  # set (CI): a missing chromium fails the page tests instead of skipping
CHROMIUM_ENV = "LETGO_CHROMIUM"  # optional: the browser executable to use


@contextmanager
def loaded_backend() -> Iterator[TantivyBackend]:
    """The embedded engine in memory with the whole seeded corpus; closed afterwards."""
    backend = TantivyBackend()
    backend.setup()
    try:
        assert backend.index(CORPUS) == len(CORPUS)
        backend.refresh()
        yield backend
    finally:
        backend.close()


# -- HTTP ----------------------------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any  # parsed JSON, or the text when the answer is not JSON

    @property
    def error(self) -> dict[str, Any]:
        return self.body["error"]


def query(params: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> str:
    return urllib.parse.urlencode(list(params.items()) if isinstance(params, Mapping) else list(params))


def call(base_url: str, path: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] = (),
         headers: Mapping[str, str] | None = None, method: str = "GET") -> Reply:
    """One real HTTP request (urllib: nothing shared with the app or the test client)."""
    url = f"{base_url}{path}" + (f"?{query(params)}" if params else "")
    request = urllib.request.Request(url, headers=dict(headers or {}), method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, got = response.status, response.read(), response.headers
    except urllib.error.HTTPError as failed:
        status, raw, got = failed.code, failed.read(), failed.headers
    text = raw.decode("utf-8")
    body: Any = json.loads(text) if (got.get("Content-Type") or "").startswith("application/json") else text
    return Reply(status, {k: v for k, v in got.items()}, body)


# -- the browser ---------------------------------------------------------------------------------------------
def find_chromium() -> str | None:
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


# The browser runs under this small parent: a child subreaper (Linux prctl) that waits for every descendant.
# Chromium's helper processes outlive the browser process by a moment; without it they would be re-parented
# to the machine's init, which in a container may never reap them (zombies piling up run after run).
REAPER = """
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
browser = os.posix_spawn(sys.argv[1], sys.argv[1:], dict(os.environ))
signal.signal(signal.SIGTERM, lambda *_: os.kill(browser, signal.SIGTERM))
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


class BrowserError(RuntimeError):
    """The browser answered a DevTools command with an error, died, or a wait ran out."""


class Browser:
    """One headless chromium process and one page in it, driven over the DevTools protocol (pipe transport)."""

    def __init__(self, executable: str, *, accept_language: str = "en-US,en") -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="letgo-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Move the child's ends above 3 and 4 first, so the dup2 actions below cannot clobber each other.
        high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)
        arguments = [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                     f"--user-data-dir={self._profile.name}", "--no-first-run", "--no-default-browser-check",
                     "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--metrics-recording-only", "--mute-audio", f"--accept-lang={accept_language}",
                     "--window-size=1280,900", "about:blank"]
        actions = [(os.POSIX_SPAWN_DUP2, high_r, 3), (os.POSIX_SPAWN_DUP2, high_w, 4),
                   (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
        try:
            self.pid = os.posix_spawn(sys.executable, [sys.executable, "-c", REAPER, *arguments], dict(os.environ),
                                      file_actions=actions, setpgroup=0)
        finally:
            os.close(high_r)
            os.close(high_w)
        self._next_id = 0
        self._pending: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = self._attach()

    # -- transport ---------------------------------------------------------------------------------------------
    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    self._closed = True
                    self._lock.notify_all()
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._lock:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._pending[message["id"]] = message
                    else:
                        self._events.append(message)
                self._lock.notify_all()

    def send(self, method: str, params: Mapping[str, Any] | None = None, *, session: bool = True,
             timeout: float = 30.0) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": dict(params or {})}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._lock:
            while ident not in self._pending:
                if self._closed:
                    raise BrowserError(f"{method}: the browser went away")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"{method}: no answer within {timeout:.0f}s")
                self._lock.wait(left)
            answer = self._pending.pop(ident)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def _attach(self) -> str:
        deadline = time.monotonic() + 30
        while True:
            targets = self.send("Target.getTargets", session=False)["targetInfos"]
            pages = [t for t in targets if t["type"] == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                raise BrowserError("the browser opened no page")
            time.sleep(0.1)
        session = self.send("Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True},
                            session=False)["sessionId"]
        self.session = session
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.send(domain)
        return session

    # -- what the tests use --------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Script exceptions, console errors and browser log errors (CSP violations, failed loads) so far."""
        found = []
        with self._lock:
            events = list(self._events)
        for event in events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                          for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        return found

    def clear_problems(self) -> None:
        with self._lock:
            self._events.clear()

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0, what: str | None = None) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"waited {timeout:.0f}s for {what or expression}")
            time.sleep(0.05)

    def renders(self) -> int:
        return int(self.evaluate("Number(document.body.dataset.renders || 0)") or 0)

    def open(self, url: str) -> None:
        """Load ``url`` and wait until the page's first search has rendered."""
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && document.body && "
                      "Number(document.body.dataset.renders || 0) > 0", what=f"the first render of {url}")

    def settled_after(self, renders: int) -> str:
        """Wait for a render after ``renders`` and return the page state (ready or error)."""
        self.wait_for(f"Number(document.body.dataset.renders || 0) > {renders} && "
                      "document.body.dataset.state !== 'loading'", what="the page to render again")
        return self.evaluate("document.body.dataset.state")

    def click(self, selector: str) -> None:
        """A real mouse click (press + release) at the centre of the element."""
        box = self.evaluate(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            if (!e) return null; e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
        if box is None:
            raise BrowserError(f"nothing matches {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 1})

    def type(self, selector: str, text: str) -> None:
        """Focus the element, clear it and type ``text`` as keyboard input (input events included)."""
        self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); "
                      "e.select && e.select(); })()")
        self.send("Input.insertText", {"text": text})

    def press(self, key: str) -> None:
        codes = {"ArrowDown": 40, "ArrowUp": 38, "Enter": 13, "Escape": 27}
        for kind in ("rawKeyDown", "keyUp"):
            params = {"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": codes[key]}
            if key == "Enter" and kind == "rawKeyDown":
                params.update(type="keyDown", text="\r")
            self.send("Input.dispatchKeyEvent", params)

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=5)
        except BrowserError:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.killpg(self.pid, signal.SIGKILL)  # its own process group: the renderers go too
            os.waitpid(self.pid, 0)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
