"""Benchmark of the Python package (issue [2/4]): `update_task_progress` calls per second,
side by side in one run, alternating rounds:

- in-process, durability `none` and `sync` (one thread; `sync` also with 8 threads);
- the native call alone (`Engine.progress`, no Python layer), to show the binding's per-call
  overhead beside the Python layer's;
- remote mode over HTTP against a spawned `logbook serve` (its durability: `sync`), 1 and 8
  threads;
- the original design: a Python tracker that rewrites its whole JSON document (1,000 tasks)
  per update, written to a temp file, fsynced and renamed.

Run: `.venv/bin/python benches/python_tracker.py` after `pip install ./python` into .venv and
`cargo build --release` (for `target/release/logbook`). Prints a Markdown table with ratios;
the results go in benches/RESULTS.md. `LOGBOOK_BENCH_QUICK=1` for a smoke run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from logbook import ProgressTracker, TaskType

QUICK = os.environ.get("LOGBOOK_BENCH_QUICK") == "1"
ROUNDS = 1 if QUICK else 3
SECONDS = 0.5 if QUICK else 2.0
REPO = Path(__file__).resolve().parents[1]


def started(tracker: ProgressTracker, tasks: int = 8) -> ProgressTracker:
    tracker.start_upgrade("bench")
    for t in range(tasks):
        tracker.add_task(f"t{t}", f"Task {t}", TaskType.UPGRADE_STEP)
        tracker.start_task(f"t{t}")
    return tracker


def rate(call, threads: int = 1) -> float:
    """Calls per second of `call(thread, i)` over SECONDS, from `threads` threads."""
    counts = [0] * threads
    stop = time.perf_counter() + SECONDS

    def work(n: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            for _ in range(64):
                call(n, i)
                i += 1
        counts[n] = i

    began = time.perf_counter()
    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - began)


class Naive:
    """The original design: the whole progress document rewritten and fsynced per update."""

    def __init__(self, path: Path, tasks: int = 1000) -> None:
        self.path = path
        self.doc = {
            "upgrade_id": "u",
            "tasks": {
                f"t{t}": {"task_id": f"t{t}", "name": f"Task {t}", "status": "in_progress",
                          "percentage": 0.0, "message": None}
                for t in range(tasks)
            },
        }

    def update(self, task_id: str, percentage: float, message: str) -> None:
        task = self.doc["tasks"][task_id]
        task["percentage"] = percentage
        task["message"] = message
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            json.dump(self.doc, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


def serve(data: str) -> tuple[subprocess.Popen, str]:
    binary = os.environ.get("LOGBOOK_BIN") or str(REPO / "target" / "release" / "logbook")
    proc = subprocess.Popen([binary, "--data", data, "serve", "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return proc, proc.stdout.readline().strip().removeprefix("listening on ")


def main() -> None:
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        none = started(ProgressTracker("u-none", "p", "c", storage_path=f"{tmp}/none", durability="none"))
        sync = started(ProgressTracker("u-sync", "p", "c", storage_path=f"{tmp}/sync"))
        native = none._engine
        proc, url = serve(f"{tmp}/served")
        remote = started(ProgressTracker("u-remote", "p", "c", server_url=url))
        naive = Naive(Path(tmp) / "progress.json")
        cases = {
            "in-process `none`, 1 thread": (lambda n, i: none.update_task_progress("t0", i % 100, "step"), 1),
            "native `Engine.progress` alone, `none`": (lambda n, i: native.progress("u-none", "t1", float(i % 100), "step", None), 1),
            "in-process `sync`, 1 thread": (lambda n, i: sync.update_task_progress("t0", i % 100, "step"), 1),
            "in-process `sync`, 8 threads": (lambda n, i: sync.update_task_progress(f"t{n}", i % 100, "step"), 8),
            "remote over HTTP (`sync` server), 1 thread": (lambda n, i: remote.update_task_progress("t0", i % 100, "step"), 1),
            "remote over HTTP (`sync` server), 8 threads": (lambda n, i: remote.update_task_progress(f"t{n}", i % 100, "step"), 8),
            "original design: 1,000-task JSON rewritten + fsync per update": (lambda n, i: naive.update(f"t{i % 1000}", i % 100, "step"), 1),
        }
        for round_ in range(ROUNDS):
            for name, (call, threads) in cases.items():
                results.setdefault(name, []).append(rate(call, threads))
            print(f"round {round_ + 1}/{ROUNDS} done", file=sys.stderr)
        for tracker in (none, sync, remote):
            tracker.close()
        proc.terminate()
        proc.wait()
    median = {name: statistics.median(r) for name, r in results.items()}
    naive_rate = median["original design: 1,000-task JSON rewritten + fsync per update"]
    print(f"\n### Python `update_task_progress` (median of {ROUNDS} alternating rounds of {SECONDS} s)\n")
    print("| measurement | calls/s [range] | µs per call | vs original design |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        m = median[name]
        print(f"| {name} | {m:,.0f} [{min(r):,.0f}–{max(r):,.0f}] | {1e6 / m:.2f} | {m / naive_rate:,.1f}x |")
    layer = 1e6 / median["in-process `none`, 1 thread"] - 1e6 / median["native `Engine.progress` alone, `none`"]
    print(f"\nPython layer on top of the native call: {layer:.2f} µs per call.")
    target = median["in-process `none`, 1 thread"]
    print(f"Targets: in-process `none` >= 100,000 calls/s: {target:,.0f} "
          f"({'PASS' if target >= 100_000 else 'FAIL'}); >= 500x the original design: "
          f"{target / naive_rate:,.0f}x ({'PASS' if target / naive_rate >= 500 else 'FAIL'}).")


if __name__ == "__main__":
    main()
