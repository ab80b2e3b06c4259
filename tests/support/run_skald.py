"""Run a skald with the test workers: ``python run_skald.py MODE SKALD_ID [YAML]``."""

import os
import sys

from skalds import SkaldConfig, Skalds
from tests.support.workers import Digest, PooledRecorder, Recorder, ReusedDigest, ReusedRecorder, Stubborn

mode, skald_id = sys.argv[1], sys.argv[2]
settings = {"skald_mode": mode, "skald_id": skald_id}
if len(sys.argv) > 3:
    settings["yaml_file"] = sys.argv[3]
app = Skalds(SkaldConfig(**settings))
app.register_task_worker(Recorder)
app.register_task_worker(Stubborn)
app.register_task_worker(ReusedRecorder)
app.register_task_worker(PooledRecorder)
app.register_task_worker(Digest)
app.register_task_worker(ReusedDigest)
if os.environ.get("SKALDS_TEST_CAMERA"):  # the README's model, and one that keeps unknown keys
    from tests.support.workers import Camera, Loose

    app.register_task_worker(Camera)
    app.register_task_worker(Loose)
app.run()
