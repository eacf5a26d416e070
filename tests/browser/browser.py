#!/usr/bin/env python3
"""Drive Debian's headless Chromium so integration tests see CORS and WebSocket as a browser does.

    python tests/browser/browser.py < plan.json      # run a plan, print one JSON result object
    python tests/browser/browser.py --self-test      # prove the harness against its own tiny API

The plan and the result are described in tests/browser/README.md. In short:

    {"pages": {"a": "127.0.0.1", "b": "localhost:41234"},
     "deadline_s": 60,
     "steps": [{"page": "a", "kind": "fetch", "url": "http://127.0.0.1:8080/api", "method": "GET",
                "headers": {"authorization": "Bearer ..."}, "credentials": "include",
                "body": null, "read_headers": ["x-request-id"]},
               {"page": "b", "kind": "websocket", "url": "ws://127.0.0.1:8080/ws",
                "send": "hello", "timeout_ms": 5000}]}

prints

    {"origins": {"a": "http://127.0.0.1:PORT", ...}, "results": [{...}, {...}]}

Exit codes: 0 with results (a failed fetch or WebSocket is a result, not an error); 2 for a plan
that cannot be read; 3 when the browser cannot start (stderr names what is missing). The whole run
is bounded by the plan's deadline_s (60 s by default): past it the steps not yet finished are
reported with an error, the browser is killed and the script exits 0 all the same.

Only the standard library and selenium (4.x) are needed; the driver path is always passed
explicitly, so Selenium Manager never tries to download anything.
"""

import base64
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import sys
import tempfile
import threading
import time

CHROMIUM = os.environ.get("JWTGATE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("JWTGATE_CHROMEDRIVER", "/usr/bin/chromedriver")
DEFAULT_DEADLINE_S = 60.0
DEFAULT_FETCH_TIMEOUT_MS = 10000
DEFAULT_WS_TIMEOUT_MS = 5000
SCRIPT_TIMEOUT_SLACK_S = 5.0

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>jwtgate browser harness</title></head>
<body><p>jwtgate browser harness page</p></body></html>
"""

# Runs in the page. arguments[0] is the step, the last argument selenium's callback.
FETCH_JS = r"""
const step = arguments[0], done = arguments[arguments.length - 1];
const names = step.read_headers || [];
const nulls = () => Object.fromEntries(names.map(n => [n, null]));
const ctl = new AbortController();
let timedOut = false;
const timer = setTimeout(() => { timedOut = true; ctl.abort(); }, step.timeout_ms);
const init = {method: step.method || "GET", headers: step.headers || {},
              credentials: step.credentials || "same-origin", mode: step.mode || "cors",
              signal: ctl.signal};
if (step.body !== null && step.body !== undefined) init.body = step.body;
(async () => {
  try {
    const r = await fetch(step.url, init);
    const headers = {};
    for (const n of names) headers[n] = r.headers.get(n);
    const body = await r.text();
    done({ok: r.ok, status: r.status, body: body, headers: headers, type: r.type, error: null});
  } catch (e) {
    const error = timedOut ? ("timeout after " + step.timeout_ms + " ms") : (e.name + ": " + e.message);
    done({ok: false, status: 0, body: null, headers: nulls(), type: null, error: error});
  } finally {
    clearTimeout(timer);
  }
})();
"""

WEBSOCKET_JS = r"""
const step = arguments[0], done = arguments[arguments.length - 1];
const res = {opened: false, received: null, closed_code: null, error: null};
let finished = false, ws = null, closing = false;
const finish = () => {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  if (ws && ws.readyState <= 1) { try { ws.close(1000); } catch (e) {} }
  done(res);
};
const timer = setTimeout(() => {
  if (!res.error && !closing) res.error = "timeout after " + step.timeout_ms + " ms";
  finish();
}, step.timeout_ms);
const closeNow = () => { closing = true; try { ws.close(1000); } catch (e) { finish(); } };
try {
  ws = step.protocols ? new WebSocket(step.url, step.protocols) : new WebSocket(step.url);
} catch (e) {
  res.error = e.name + ": " + e.message;
  finish();
}
if (ws) {
  ws.onopen = () => {
    res.opened = true;
    if (step.send !== null && step.send !== undefined) ws.send(step.send);
    else if (!step.wait_message) closeNow();
  };
  ws.onmessage = (ev) => {
    if (res.received === null) {
      res.received = (typeof ev.data === "string") ? ev.data : "[binary message]";
      closeNow();
    }
  };
  ws.onerror = () => { if (!res.error) res.error = "WebSocket error event"; };
  ws.onclose = (ev) => {
    res.closed_code = ev.code;
    if (!closing && !res.error && ev.code !== 1000) res.error = "closed with code " + ev.code;
    finish();
  };
}
"""


class Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


class PageHandler(Quiet):
    """Answers every GET with the trivial page (the favicon with 204)."""

    def do_GET(self):
        if self.path == "/favicon.ico":
            self.send_response(204)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(PAGE)


class Server4(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Server6(Server4):
    address_family = socket.AF_INET6


def serve(handler, host, port):
    """Start a threaded HTTP server on host:port (0: any free port); returns the servers started."""
    bind = "127.0.0.1" if host == "localhost" else host.strip("[]")
    cls = Server6 if ":" in bind else Server4
    srv = cls((bind, port), handler)
    servers = [srv]
    if host == "localhost":
        # Chromium may try ::1 first for localhost; answer there too when the machine has it.
        try:
            servers.append(Server6(("::1", srv.server_address[1]), handler))
        except OSError:
            pass
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return servers


def stop_servers(servers):
    for s in servers:
        try:
            s.shutdown()
            s.server_close()
        except Exception:
            pass


def parse_page(spec):
    """'127.0.0.1', 'localhost:41234', '[::1]:8000' or {"host": ..., "port": ...} -> (host, port)."""
    if isinstance(spec, dict):
        return str(spec["host"]), int(spec.get("port", 0))
    spec = str(spec)
    if spec.startswith("["):
        host, _, rest = spec.partition("]")
        return host + "]", int(rest[1:]) if rest.startswith(":") else 0
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return host, int(port)
    return spec, 0


def substitute(value, origins):
    """Replaces {origin:NAME} in strings of the step with that page's origin."""
    if isinstance(value, str):
        for name, origin in origins.items():
            value = value.replace("{origin:%s}" % name, origin)
        return value
    if isinstance(value, dict):
        return {k: substitute(v, origins) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, origins) for v in value]
    return value


def fail_result(step, message):
    if step.get("kind") == "websocket":
        return {"opened": False, "received": None, "closed_code": None, "error": message}
    names = step.get("read_headers") or []
    return {"ok": False, "status": 0, "body": None, "headers": {n: None for n in names},
            "type": None, "error": message}


def start_browser(tmp):
    """Returns (driver, chromedriver pid) or exits 3 naming what is missing."""
    missing = []
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the Python package selenium (pip install selenium, in %s)" % sys.executable)
    if not os.path.isfile(CHROMIUM):
        missing.append("Chromium at %s (apt-get install chromium)" % CHROMIUM)
    if not os.path.isfile(CHROMEDRIVER):
        missing.append("chromedriver at %s (apt-get install chromium-driver)" % CHROMEDRIVER)
    if missing:
        sys.stderr.write("browser.py: cannot start the browser; missing: %s\n" % "; ".join(missing))
        sys.exit(3)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download anything.
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--disable-crash-reporter", "--disable-breakpad",
                "--no-proxy-server", "--user-data-dir=" + os.path.join(tmp, "profile")):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    log_path = os.path.join(tmp, "chromedriver.log")
    service = Service(executable_path=CHROMEDRIVER, log_output=log_path,
                      popen_kw={"start_new_session": True})
    try:
        driver = webdriver.Chrome(service=service, options=opts)
    except Exception as e:
        tail = ""
        try:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                tail = "".join(f.readlines()[-15:])
        except OSError:
            pass
        pid = getattr(getattr(service, "process", None), "pid", None)
        kill_group(pid)
        sys.stderr.write("browser.py: Chromium (%s) with chromedriver (%s) did not start: %s\n%s"
                         % (CHROMIUM, CHROMEDRIVER, str(e).strip(), tail))
        sys.exit(3)
    return driver, service.process.pid


def kill_group(pid):
    """Kills chromedriver and the Chromium it started (they share chromedriver's session)."""
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass


def drain_console(driver):
    try:
        return [e.get("message", "") for e in driver.get_log("browser")]
    except Exception:
        return []


def run_plan(plan, out=sys.stdout):
    """Runs the plan; returns the result object (also printed as one JSON line on out)."""
    pages = plan.get("pages") or {}
    steps = plan.get("steps") or []
    deadline_s = float(plan.get("deadline_s", DEFAULT_DEADLINE_S))
    if not pages:
        raise ValueError("the plan names no pages")

    state = {"emitted": False, "driver_pid": None}
    lock = threading.Lock()
    origins = {}
    results = []
    servers = []
    tmp = tempfile.mkdtemp(prefix="jwtgate-browser-")

    def emit(extra_error=None):
        with lock:
            if state["emitted"]:
                return None
            state["emitted"] = True
            done = list(results)
            for step in steps[len(done):]:
                done.append(fail_result(step, extra_error or "not run"))
            obj = {"origins": origins, "results": done}
            out.write(json.dumps(obj) + "\n")
            out.flush()
            return obj

    def on_deadline():
        emit("harness deadline of %g s exceeded before this step finished" % deadline_s)
        sys.stderr.write("browser.py: deadline of %g s exceeded; killing the browser\n" % deadline_s)
        kill_group(state["driver_pid"])
        stop_servers(servers)
        shutil.rmtree(tmp, ignore_errors=True)
        os._exit(0)

    watchdog = threading.Timer(deadline_s, on_deadline)
    watchdog.daemon = True
    watchdog.start()
    driver = None
    try:
        for name, spec in pages.items():
            host, port = parse_page(spec)
            started = serve(PageHandler, host, port)
            servers.extend(started)
            origins[name] = "http://%s:%d" % (host, started[0].server_address[1])

        driver, state["driver_pid"] = start_browser(tmp)
        current = None
        for raw in steps:
            step = substitute(dict(raw), origins)
            page = step.get("page") or next(iter(pages))
            kind = step.get("kind")
            try:
                if page not in origins:
                    results.append(fail_result(step, "unknown page %r" % page))
                    continue
                if page != current:
                    driver.get(origins[page] + "/")
                    current = page
                drain_console(driver)
                if kind == "fetch":
                    step.setdefault("timeout_ms", DEFAULT_FETCH_TIMEOUT_MS)
                    js = FETCH_JS
                elif kind == "websocket":
                    step.setdefault("timeout_ms", DEFAULT_WS_TIMEOUT_MS)
                    js = WEBSOCKET_JS
                else:
                    results.append(fail_result(step, "unknown step kind %r" % kind))
                    continue
                driver.set_script_timeout(step["timeout_ms"] / 1000.0 + SCRIPT_TIMEOUT_SLACK_S)
                res = driver.execute_async_script(js, step)
                if not isinstance(res, dict):
                    res = fail_result(step, "the page script returned %r" % (res,))
            except Exception as e:  # a step that breaks is a result; the next step starts afresh
                res = fail_result(step, "harness: %s: %s" % (type(e).__name__, str(e).strip()[:500]))
                current = None
            res["console"] = drain_console(driver)
            results.append(res)
        return emit()
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
            kill_group(state["driver_pid"])
        stop_servers(servers)
        shutil.rmtree(tmp, ignore_errors=True)
        watchdog.cancel()


# ---------------------------------------------------------------------------------------------
# --self-test: a tiny "API" on 127.0.0.1 and a plan against it, from pages on other origins.

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return buf


def read_frame(sock):
    b0, b1 = recv_exact(sock, 2)
    opcode, n = b0 & 0x0F, b1 & 0x7F
    if n == 126:
        n = int.from_bytes(recv_exact(sock, 2), "big")
    elif n == 127:
        n = int.from_bytes(recv_exact(sock, 8), "big")
    mask = recv_exact(sock, 4) if b1 & 0x80 else None
    data = recv_exact(sock, n)
    if mask:
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
    return opcode, data


def frame(opcode, data):
    n = len(data)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + data


class ApiHandler(Quiet):
    """/cors/ok: preflight and GET with CORS; /cors/401: 401 JSON with CORS; /nocors: 401, no
    CORS; /ws: WebSocket echo of one text message; /ws-deny: upgrade refused with 401."""

    def cors(self):
        origin = self.headers.get("Origin")
        if origin:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Vary", "Origin")

    def reply(self, status, obj, headers=(), cors=True):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        if cors:
            self.cors()
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self):
        if self.path.startswith("/cors/"):
            self.send_response(204)
            self.cors()
            self.send_header("Access-Control-Allow-Methods", "GET, POST")
            self.send_header("Access-Control-Allow-Headers", "authorization, content-type")
            self.send_header("Access-Control-Max-Age", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def do_GET(self):
        if self.path == "/cors/ok":
            self.reply(200, {"hello": "world"}, [("X-Request-Id", "req-1"), ("X-Internal", "secret"),
                                                 ("Access-Control-Expose-Headers", "x-request-id")])
        elif self.path == "/cors/401":
            self.reply(401, {"error": "unauthorized"}, [("WWW-Authenticate", "Bearer"),
                                                         ("Access-Control-Expose-Headers",
                                                          "www-authenticate")])
        elif self.path == "/nocors":
            self.reply(401, {"error": "unauthorized"}, cors=False)
        elif self.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.websocket_echo()
        else:  # /ws-deny and anything else
            self.reply(401, {"error": "unauthorized"}, cors=False)

    def websocket_echo(self):
        key = self.headers.get("Sec-WebSocket-Key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        self.wfile.flush()
        self.close_connection = True
        sock = self.connection
        sock.settimeout(5)
        try:
            while True:
                opcode, data = read_frame(sock)
                if opcode == 0x1:
                    sock.sendall(frame(0x1, data))
                elif opcode == 0x9:
                    sock.sendall(frame(0xA, data))
                elif opcode == 0x8:
                    sock.sendall(frame(0x8, data[:2]))
                    return
        except (OSError, ConnectionError):
            return


def self_test():
    api = serve(ApiHandler, "127.0.0.1", 0)
    base = "http://127.0.0.1:%d" % api[0].server_address[1]
    ws = "ws://127.0.0.1:%d" % api[0].server_address[1]
    auth = {"authorization": "Bearer not-a-real-token"}
    plan = {
        "pages": {"a": "localhost", "b": "127.0.0.1"},
        "steps": [
            {"page": "a", "kind": "fetch", "url": base + "/cors/ok", "headers": auth,
             "credentials": "include", "read_headers": ["x-request-id", "x-internal"]},
            {"page": "a", "kind": "fetch", "url": base + "/cors/401", "headers": auth,
             "credentials": "include", "read_headers": ["www-authenticate"]},
            {"page": "a", "kind": "fetch", "url": base + "/nocors", "credentials": "omit"},
            {"page": "b", "kind": "fetch", "url": base + "/nocors", "headers": auth},
            {"page": "b", "kind": "fetch", "url": "{origin:b}/same-origin.html"},
            {"page": "b", "kind": "websocket", "url": ws + "/ws", "send": "hello"},
            {"page": "a", "kind": "websocket", "url": ws + "/ws-deny", "send": "hello"},
        ],
    }
    started = time.monotonic()
    try:
        out = run_plan(plan)
    finally:
        stop_servers(api)
    elapsed = time.monotonic() - started
    r = out["results"]
    checks = [
        ("cross-origin 200 with CORS is readable", r[0]["ok"] and r[0]["status"] == 200
         and json.loads(r[0]["body"]) == {"hello": "world"}),
        ("exposed header readable, unexposed one hidden", r[0]["headers"] ==
         {"x-request-id": "req-1", "x-internal": None}),
        ("cross-origin 401 with CORS is readable", not r[1]["ok"] and r[1]["status"] == 401
         and r[1]["error"] is None and json.loads(r[1]["body"]) == {"error": "unauthorized"}
         and r[1]["headers"] == {"www-authenticate": "Bearer"}),
        ("401 without CORS is blocked (TypeError)", r[2]["status"] == 0
         and r[2]["error"] == "TypeError: Failed to fetch"),
        ("failed preflight is blocked (TypeError)", r[3]["status"] == 0
         and r[3]["error"] == "TypeError: Failed to fetch"),
        ("same-origin fetch works", r[4]["ok"] and r[4]["status"] == 200 and r[4]["type"] == "basic"),
        ("WebSocket echo", r[5]["opened"] and r[5]["received"] == "hello"
         and r[5]["closed_code"] == 1000 and r[5]["error"] is None),
        ("refused WebSocket upgrade", not r[6]["opened"] and r[6]["received"] is None
         and r[6]["closed_code"] == 1006 and r[6]["error"] is not None),
    ]
    failed = 0
    for name, good in checks:
        failed += not good
        sys.stderr.write("%s  %s\n" % ("ok  " if good else "FAIL", name))
    sys.stderr.write("self-test: %d steps in %.1f s; %d passed, %d failed\n"
                     % (len(r), elapsed, len(checks) - failed, failed))
    return 1 if failed else 0


def main(argv):
    if "--self-test" in argv[1:]:
        return self_test()
    if len(argv) > 1:
        sys.stderr.write(__doc__)
        return 2
    try:
        plan = json.load(sys.stdin)
        if not isinstance(plan, dict):
            raise ValueError("the plan must be a JSON object")
    except ValueError as e:
        sys.stderr.write("browser.py: cannot read the plan on stdin: %s\n" % e)
        return 2
    try:
        run_plan(plan)
    except (ValueError, KeyError, TypeError, OSError) as e:
        sys.stderr.write("browser.py: bad plan: %s: %s\n" % (type(e).__name__, e))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
