"""Processes and threads: a second process on a data dir gets a clear error; a Python process
killed with SIGKILL after acknowledged `sync` calls loses none; 8 threads record at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from conftest import wait_for
from logbook import LogbookError, ProgressTracker, TaskType

CHILD = textwrap.dedent(
    """
    import sys
    from logbook import ProgressTracker, TaskType
    tracker = ProgressTracker("u-1", "p", "c", storage_path=sys.argv[1])
    tracker.start_upgrade("one")
    tracker.add_task("t", "T", TaskType.UPGRADE_STEP)
    tracker.start_task("t")
    print("ready", flush=True)
    i = 0
    while True:
        offset = tracker.update_task_progress("t", i % 100, f"call {i}")
        print(offset, i, flush=True)
        i += 1
    """
)


def test_sigkill_after_acknowledged_sync_calls_loses_none(data_dir):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, data_dir], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        acked = {}
        for _ in range(300):
            offset, i = child.stdout.readline().split()
            acked[int(offset)] = f"call {i}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # Everything the child printed was acknowledged (returned) before it printed it.
    tracker = ProgressTracker("u-1", "p", "c", storage_path=data_dir)
    last = max(acked)
    assert tracker.journal_offset > last
    task = tracker.get_task("t")
    assert task.message is not None
    # Every acknowledged event is in the journal, byte for byte the message it carried.
    from logbook import _native  # the engine's own reader, through a callback from offset 0

    seen = {}
    tracker._engine.on_record("check", lambda line: seen.update({json.loads(line)["offset"]: json.loads(line)}), 0)
    wait_for(lambda: last in seen, 30, "the journal read back")
    for offset, message in acked.items():
        assert seen[offset]["type"] == "task.progress"
        assert seen[offset]["message"] == message
    tracker.close()


def test_a_second_process_gets_an_error_naming_the_holder(data_dir):
    holder = ProgressTracker("u-1", "p", "c", storage_path=data_dir)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys
                from logbook import LogbookError, ProgressTracker
                try:
                    ProgressTracker("u-1", "p", "c", storage_path=sys.argv[1])
                except LogbookError as e:
                    print(e.code)
                    print(e.reason)
                """
            ),
            data_dir,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    code, reason = out.stdout.strip().split("\n", 1)
    assert code == "locked", out
    assert f"pid {os.getpid()}" in reason
    assert "server_url=" in reason and "logbook serve" in reason
    holder.close()


def test_eight_threads_record_at_once(open_tracker):
    tracker = open_tracker("u-1")
    tracker.start_upgrade("one")
    for t in range(8):
        tracker.add_task(f"t{t}", f"T{t}", TaskType.UPGRADE_STEP)
        tracker.start_task(f"t{t}")
    errors = []
    offsets = []

    def work(t):
        try:
            for i in range(200):
                offsets.append(tracker.update_task_progress(f"t{t}", i / 2, f"{t}-{i}"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(offsets)) == 1600
    progress = tracker.get_progress()
    assert all(progress.tasks[f"t{t}"].percentage == 99.5 for t in range(8))
    tracker.close()


def test_one_dir_with_other_settings_is_refused_in_one_process(data_dir):
    tracker = ProgressTracker("u-1", "p", "c", storage_path=data_dir)
    with pytest.raises(LogbookError) as refused:
        ProgressTracker("u-1", "p", "c", storage_path=data_dir, durability="none")
    assert refused.value.code == "settings_differ"
    assert "durability=sync" in refused.value.reason
    tracker.close()
