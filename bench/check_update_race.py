"""Do back-to-back ``update_attachments`` calls all reach the worker, and does the store keep the last?

Usage: ``python bench/check_update_race.py [--rounds 5] [--burst 50] [--via update_attachments]``

Not a benchmark: a correctness probe found while writing ``run_embedded.py``. One long-running task
gets ``burst`` updates with no pause between them; afterwards the last value the worker's
@update_event_handler saw and the attachments in the store should both be the last update sent.
Exit code 1 when either is not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from run_embedded import Bench, BenchError, Receiver, Tracker, parse_args, wait_until

from skalds.client import SkaldsClient


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--burst", type=int, default=50)
    p.add_argument("--via", choices=("update_attachments", "send_worker_update"), default="update_attachments")
    p.add_argument("--settle", type=float, default=3.0, help="seconds to wait for the last update to land")
    args = p.parse_args()
    home = tempfile.mkdtemp(prefix="skalds-race-")
    url = f"sqlite:///{home}/skalds.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKALD", "LOG_"))}
    env.update(SKALDS_HOME=home, SKALDS_STORE_URL=url, SKALDS_BUS_URL=url, SKALDS_CACHE_URL=url)
    tracker = Tracker()
    recv = Receiver(os.path.join(home, "bench.sock"))
    recv.start()
    client = SkaldsClient(skalds_home=home, store_url=url, bus_url=url, cache_url=url, initiator="race")
    bench = Bench(parse_args(["--quick"]), tracker, home, recv, client, env)
    bad = 0
    try:
        skald = bench.start_skald("race-node")
        for r in range(args.rounds):
            task_id = f"race-{r}"
            client.create_task(bench.task(task_id, hold=True), executor=skald.skald_id)
            bench.wait_main(task_id)
            last = args.burst - 1
            for i in range(args.burst):
                payload: dict[str, Any] = {"sentAt": time.time(), "seq": i, "via": args.via}
                if args.via == "update_attachments":
                    client.update_attachments(task_id, payload)
                else:
                    client.send_worker_update(task_id, payload)
            try:
                recv.wait(("update", task_id, args.via, last), args.settle, "the last update")
                handled_last = True
            except BenchError:
                handled_last = False
            # The skald writes what the worker applied back to the store; let that settle too.
            try:
                wait_until(
                    lambda t=task_id, n=last: (client.get(t).attachments or {}).get("seq") == n,  # type: ignore[union-attr]
                    args.settle,
                    "the store holds the last update",
                    0.02,
                )
                stored_last = True
            except BenchError:
                stored_last = False
            seen = sorted(i for i in range(args.burst) if recv.get(("update", task_id, args.via, i)) is not None)
            stored = (client.get(task_id).attachments or {}).get("seq")  # type: ignore[union-attr]
            ok = handled_last and stored_last
            bad += not ok
            print(
                f"round {r}: handler saw {len(seen)}/{args.burst} updates, last seen seq "
                f"{seen[-1] if seen else None}, store seq {stored} (sent last {last}) -> {'ok' if ok else 'LOST'}"
            )
            client.cancel(task_id)
            recv.wait(("release", task_id), 30.0, f"release of {task_id}")
    finally:
        tracker.cleanup()
        recv.stop()
        client.close()
        shutil.rmtree(home, ignore_errors=True)
    print(f"{bad} of {args.rounds} rounds lost the last update")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
