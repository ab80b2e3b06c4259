"""100 ``task.assign`` events to Kafka: ``publish()`` one at a time against one ``publish_many()``.

``SKALDS_TANSU_BIN=.cache/tansu/tansu python bench/kafka_publish_many.py [--n 100] [--rounds 5]``

A dispatch pass publishes one event per task it assigned. ``publish()`` waits for the broker's
delivery report of each message; ``publish_many()`` produces them all and waits once. Starts its
own Tansu broker (memory storage) on a free loopback port.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skalds.backends.factory import open_bus
from tests.support.servers import TansuServer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="events per round (default 100)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of each (default 5)")
    args = p.parse_args()
    binary = os.environ.get("SKALDS_TANSU_BIN")
    if not binary:
        sys.exit("set SKALDS_TANSU_BIN to the tansu binary (scripts/test installs it in .cache/tansu/tansu)")
    server = TansuServer(binary)
    server.start()
    try:
        bus = open_bus(server.url)
        topic = "task.assign"
        bus.publish(topic, "warm-up", b"{}")
        messages: list[tuple[str | None, bytes | str]] = [
            (f"task-{i}", b'{"title":"task.assign","taskIds":["task-%d"]}' % i) for i in range(args.n)
        ]
        one_by_one, together = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for key, value in messages:
                bus.publish(topic, key, value)
            one_by_one.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            bus.publish_many(topic, messages)
            together.append((time.perf_counter() - started) * 1000)
        bus.close()
    finally:
        server.stop()
    print(f"{args.n} × publish():   median {statistics.median(one_by_one):.2f} ms  {[round(x, 2) for x in one_by_one]}")
    print(f"publish_many({args.n}): median {statistics.median(together):.2f} ms  {[round(x, 2) for x in together]}")


if __name__ == "__main__":
    main()
