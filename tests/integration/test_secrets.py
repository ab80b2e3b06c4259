"""Credentials never reach the logs, whatever happens to the connections they are for."""

from __future__ import annotations

from tests.support.procs import ROOT, Proc, base_env
from tests.support.servers import free_port

RUNNER = ROOT / "tests" / "support" / "run_skald.py"


def test_passwords_are_masked_in_every_log_line(procs, home, tmp_path):
    # Given a skald whose servers are all unreachable, configured with passwords in every style
    closed = [free_port() for _ in range(3)]
    secrets = ["s3cr3t-redis", "s3cr3t-kafka", "s3cr3t-pg"]
    env = base_env(
        home,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(closed[0]),
        REDIS_PASSWORD=secrets[0],
        KAFKA_HOST="127.0.0.1",
        KAFKA_PORT=str(closed[1]),
        KAFKA_USERNAME="user",
        KAFKA_PASSWORD=secrets[1],
        SKALDS_STORE_URL=f"postgresql://admin:{secrets[2]}@127.0.0.1:{closed[2]}/skalds",
        LOG_PATH=str(tmp_path / "logs"),
        LOG_LEVEL="DEBUG",
    )
    p = Proc.python(RUNNER, "node", "secretive", env=env, log=tmp_path / "out.log")
    procs.append(p)

    # When it has tried (and failed) to reach each of them
    p.wait_output(r"task store at postgresql://admin:\*\*\*@127\.0\.0\.1", timeout=20)
    p.wait_output(r"state cache at redis://:\*\*\*@127\.0\.0\.1", timeout=20)
    p.stop()

    # Then no password appears on the console or in the log files
    texts = [p.output()] + [f.read_text() for f in (tmp_path / "logs").glob("*.log")]
    assert len(texts) >= 2
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert "redis_password: ***" in texts[0] and "kafka_password: ***" in texts[0]
