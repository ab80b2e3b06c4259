"""Create a task for node ``node-1``, send it an update, then cancel it.

Start the node first (``python workers.py node-1``), then run this in the same folder.
"""

import sys
import time

from skalds.client import SkaldsClient
from skalds.model.task import Task

executor = sys.argv[1] if len(sys.argv) > 1 else "node-1"
with SkaldsClient() as client:
    task_id = f"counter-{int(time.time())}"
    client.create_task(
        Task(id=task_id, className="CounterWorker", attachments={"step": 1, "ticks": 20}),
        executor=executor,
    )
    print(f"created {task_id} on {executor}")
    time.sleep(2)
    client.update_attachments(task_id, {"step": 10})
    print("sent update: step=10")
    time.sleep(2)
    client.cancel(task_id)
    print("cancelled; final record:")
    time.sleep(0.5)
    task = client.get(task_id)
    assert task is not None
    print(f"  {task.id}: {task.lifecycle_status.value} on {task.executor}")
