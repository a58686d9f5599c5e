"""`qa serve` under load: closed-loop clients on loopback against a real `qa serve` process.

Starts `qa serve --index INDEX --port 0` (the command line, as a user runs it), waits for /ready,
then for each concurrency (default 1, 4, 16, 64, 100) runs that many clients for --seconds each:
every client asks a question, waits for the answer, asks the next (keep-alive connections; after a
503 it waits as the response's Retry-After says, as a well-behaved client does). The
questions are those of `qa evaluate open-squad --limit N --seed S`. Reports throughput, latency
percentiles of answered questions, responses by status, and the server's peak RSS (sampled from
/proc every 0.25 s) per level, and the RSS at the start and end of the run (growth).

    python benchmarks/bench_serve.py --index ~/.cache/qa/indexes/open-squad-* [--seconds 60]

Prints a table and writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.corpora.squad import sample_examples  # noqa: E402
from qa.device import cpu_name  # noqa: E402
from qa.eval.question_sets import load_question_set  # noqa: E402

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_server(index: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "qa", "serve", "--index", index, "--port", "0", *extra]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    url = None
    for line in server.stderr:
        print("server:", line.rstrip(), flush=True)
        found = re.search(r"at (http://\S+?)/? ", line)
        url = url or (found.group(1).rstrip("/") if found else None)
        if line.startswith("Ready") or "error" in line:
            break
    if not url or server.poll() is not None:
        raise SystemExit("the server did not start")
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # keep draining its log
    return server, url


def run_level(url: str, clients: int, seconds: float, questions: list[str], server_pid: int) -> dict:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    peak = [rss_mb(server_pid)]
    done = threading.Event()

    def sample():
        while not done.wait(0.25):
            peak[0] = max(peak[0], rss_mb(server_pid))

    def client(i: int):
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        n = i
        while time.perf_counter() < deadline:
            body = json.dumps({"question": questions[n % len(questions)]})
            n += clients
            started = time.perf_counter()
            try:
                connection.request("POST", "/ask", body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                status = response.status
                if response.getheader("connection", "").lower() == "close":
                    connection.close()
            except (OSError, http.client.HTTPException):
                status = 0  # connection refused or dropped
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=120)
            elapsed = time.perf_counter() - started
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(elapsed)
            if status == 503:  # shed: a well-behaved client waits as Retry-After says
                time.sleep(float(response.getheader("retry-after") or 1))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    done.set()
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "clients": clients,
        "seconds": round(wall, 1),
        "answered": len(latencies),
        "throughput_qps": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors_5xx_not_503": sum(v for k, v in statuses.items() if k >= 500 and k != 503) + statuses.get(0, 0),
        "peak_rss_mb": round(peak[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, help="the open-squad index (qa evaluate open-squad builds and caches it)")
    parser.add_argument("--clients", default="1,4,16,64,100")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--limit", type=int, default=1000, help="questions of qa evaluate open-squad --limit N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-arg", action="append", default=[], help="passed on to qa serve (repeatable)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    args = parser.parse_args()
    questions = [e.question for e in sample_examples(load_question_set("open-squad", data=str(DATA)).examples, args.limit, args.seed)]
    server, url = start_server(args.index, args.server_arg)
    try:
        for q in questions[:20]:  # warm-up
            connection = http.client.HTTPConnection(*url.removeprefix("http://").split(":"), timeout=120)
            connection.request("POST", "/ask", body=json.dumps({"question": q}), headers={"Content-Type": "application/json"})
            connection.getresponse().read()
        rss_start = rss_mb(server.pid)
        rows = []
        for clients in [int(c) for c in args.clients.split(",")]:
            row = run_level(url, clients, args.seconds, questions, server.pid)
            rows.append(row)
            print(json.dumps(row), flush=True)
        rss_end = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    print(f"\nqa serve, {len(questions)} open-squad questions, {args.seconds:g} s per level, {cpu_name()}, {os.cpu_count()} cores")
    print(f"{'clients':>7} {'q/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'answered':>8}  {'statuses':<28} {'peak RSS MB':>11}")
    for r in rows:
        print(f"{r['clients']:>7} {r['throughput_qps']:>7.2f} {r['p50_ms']:>8.0f} {r['p95_ms']:>8.0f} {r['p99_ms']:>8.0f} "
              f"{r['answered']:>8}  {json.dumps(r['statuses']):<28} {r['peak_rss_mb']:>11.0f}")
    print(f"server RSS after warm-up {rss_start:.0f} MB, at the end {rss_end:.0f} MB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "cpu": cpu_name(), "cores": os.cpu_count(), "index": args.index, "questions": len(questions), "seed": args.seed,
        "seconds_per_level": args.seconds, "server_args": args.server_arg, "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1), "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
