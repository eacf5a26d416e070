"""One measurement of one target, as benches/claims.py, rs256.py and tracing.py take it on top
of ../shared/bench/peers/bench.py: start it pinned, check that the token passes, warm up, count
the CPU its processes spend while wrk runs, stop it; and the table they print."""
import signal
import subprocess
import time

import bench  # noqa: E402  (the caller puts ../shared/bench/peers on sys.path)


def run(name, kind, token, after=None):
    """Measures `kind` (`nginx`, `haproxy` or `jwtgate`, its config written already) with `token`:
    (CPU µs per request, requests/s, non-2xx answers), and what `after()` returns once the load
    is over (None without it)."""
    bench.TOK = token
    p = bench.start(kind, False)
    url = f"http://127.0.0.1:{bench.PORTS[kind][0]}/"
    # Warm up, and check that the token passes (a 401 or 403 would be cheap and wrong).
    check = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                            "Authorization: Bearer " + token, url], capture_output=True, text=True)
    if check.stdout != "200":
        raise SystemExit(f"{name}: the token got {check.stdout}, not 200")
    subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c16", "-d2s", "-H",
                    "Authorization: Bearer " + token, url], capture_output=True)
    pids = bench.children(p.pid)
    t0 = bench.ticks(pids)
    n, errs = bench.wrk(url, False)
    t1 = bench.ticks(pids)
    us = (t1 - t0) / bench.CLK * 1e6 / max(n, 1)
    extra = after() if after else None
    p.send_signal(signal.SIGTERM if kind != "nginx" else signal.SIGQUIT)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    time.sleep(0.3)
    return (us, n / bench.DUR, errs), extra


def report(res, names, base, width, extra=None):
    """Prints, for each of `names`, the best CPU µs per request, the median requests/s, the
    non-2xx count, `extra[name]` when given, and the ratio to `base`'s best."""
    best = min(u for u, _, _ in res[base])
    head = f"{'target':{width}s} {'us/req min':>10s} {'req/s med':>10s} errs"
    if extra is not None:
        head += f" {'spans out/dropped':>18s}"
    print(f"{head}  vs {base}")
    for name in names:
        rows = res[name]
        us = min(u for u, _, _ in rows)
        rps = sorted(r for _, r, _ in rows)[len(rows) // 2]
        line = f"{name:{width}s} {us:10.1f} {rps:10.0f} {sum(e for _, _, e in rows):4d}"
        if extra is not None:
            line += f" {extra.get(name, '-'):>18s}"
        print(f"{line}  {us / best:.2f}")
