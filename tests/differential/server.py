"""Starting, stopping and talking to one `eventide serve` process (loopback only).

Every wait polls a condition on the server's own figures (`GET /api/v1/datasets`) with a
generous deadline and a message that says what was awaited and what was last seen.
"""

import http.client
import json
import os
import queue
import signal
import subprocess
import threading
import time

INGEST_KEY, QUERY_KEY, ADMIN_KEY = "ik", "qk", "ak"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 180.0
WAIT_TIMEOUT = 300.0

_RUNNING = set()  # every child this process started and has not reaped (for cleanup)


def stop_all():
    """Ends the servers this process started and still runs (SIGKILL, by pid)."""
    for proc in list(_RUNNING):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _RUNNING.discard(proc)


class HarnessError(Exception):
    """The harness could not bring the server into the state it needs (not a query failure)."""


class Client:
    """One keep-alive HTTP connection to the server; one per thread."""

    def __init__(self, port, key=ADMIN_KEY, timeout=90.0):
        self.port, self.key, self.timeout = port, key, timeout
        self.conn = None

    def _connect(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)

    def request(self, method, path, body=None, raw=None):
        """(status, parsed JSON or None, raw text, headers)."""
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"X-Honeycomb-Team": self.key, "Content-Type": "application/json"}
        for attempt in range(3):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=payload, headers=headers)
                resp = self.conn.getresponse()
                text = resp.read().decode("utf-8", "replace")
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
                return resp.status, parsed, text, resp
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Server:
    def __init__(self, binary, data_dir, flags, log_path, log):
        self.binary, self.data_dir, self.flags = binary, data_dir, list(flags)
        self.log_path, self.log = log_path, log
        self.proc = None
        self.port = None
        self.client = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        env = dict(os.environ)
        env["EVENTIDE_KEYS"] = f"ingest:{INGEST_KEY},query:{QUERY_KEY},admin:{ADMIN_KEY}"
        env.setdefault("EVENTIDE_LOG", "warn")
        args = [self.binary, "serve", "--data-dir", self.data_dir, "--http", "127.0.0.1:0",
                "--query-timeout-seconds", "60"] + self.flags
        self.log(f"  start: {' '.join(args[1:])}")
        errf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=errf,
                                     stdin=subprocess.DEVNULL)
        errf.close()
        _RUNNING.add(self.proc)
        lines = queue.Queue()

        def pump(stream):
            for raw in iter(stream.readline, b""):
                lines.put(raw.decode("utf-8", "replace"))
            lines.put(None)

        threading.Thread(target=pump, args=(self.proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        prefix = "eventide listening on http://"
        while self.port is None:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise HarnessError(f"eventide did not print its address within {START_TIMEOUT:.0f} s"
                                   f" (stderr in {self.log_path})")
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait()
                raise HarnessError(f"eventide exited with {code} before listening"
                                   f" (stderr in {self.log_path})")
            if line.startswith(prefix):
                self.port = int(line[len(prefix):].split()[0].split(":")[1].rstrip("/"))
        self.client = Client(self.port)
        while True:
            try:
                status, _, _, _ = Client(self.port, timeout=5).request("GET", "/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise HarnessError(f"/healthz never answered 200 within {START_TIMEOUT:.0f} s")
            time.sleep(0.05)
        return self

    def stop(self):
        """SIGTERM (the server flushes every hot tail) and wait for a clean exit."""
        if self.proc is None:
            return
        if self.client:
            self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise HarnessError(f"eventide did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM")
        _RUNNING.discard(self.proc)
        self.proc = None
        if code != 0:
            raise HarnessError(f"eventide exited with {code} after SIGTERM (stderr in {self.log_path})")

    def kill(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            _RUNNING.discard(self.proc)
            self.proc = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- API -------------------------------------------------------------------------------
    def ingest(self, dataset, items, client=None):
        """Posts one batch; returns the per-item statuses. Retries 503/429 (overload)."""
        client = client or self.client
        body = json.dumps(items, allow_nan=True).encode()
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            status, parsed, text, resp = client.request("POST", f"/1/batch/{dataset}", raw=body)
            if status == 200 and isinstance(parsed, list):
                return parsed
            if status in (429, 503) and time.monotonic() < deadline:
                time.sleep(float(resp.getheader("Retry-After", "1") or 1))
                continue
            raise HarnessError(f"POST /1/batch/{dataset} answered {status}: {text[:500]}")

    def sql(self, text, client=None):
        status, parsed, raw, _ = (client or self.client).request("POST", "/api/v1/sql", {"sql": text})
        return status, parsed, raw

    def spec(self, dataset, spec, client=None):
        status, parsed, raw, _ = (client or self.client).request(
            "POST", f"/api/v1/query/{dataset}", spec)
        return status, parsed, raw

    def dataset(self, name, client=None):
        status, parsed, raw, _ = (client or self.client).request("GET", "/api/v1/datasets")
        if status != 200:
            raise HarnessError(f"GET /api/v1/datasets answered {status}: {raw[:300]}")
        for d in parsed["datasets"]:
            if d["name"] == name:
                return d
        return None

    def wait_for(self, name, what, cond, timeout=WAIT_TIMEOUT):
        """Polls the dataset's listing until cond(listing) holds."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = self.dataset(name)
            if last is not None and cond(last):
                return last
            if not self.alive():
                raise HarnessError(f"eventide exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what};"
                                   f" last listing: {json.dumps(last)}")
            time.sleep(0.1)
