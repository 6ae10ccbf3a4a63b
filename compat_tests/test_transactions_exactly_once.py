"""Exactly once, end to end: a consume-transform-produce job (eos_job.py, confluent-kafka, one
transactional.id) turns every input record into one output record, read exactly once by a
read_committed consumer (none missing, none twice), although the job is SIGKILLed mid-run and
started again, or the gateway coordinating its transactions and group is SIGKILLed and
restarted under it (the job retries, or is started again when it dies of a fatal error).

Either kill comes while a transaction is open with its output in the log and its input offsets
sent (the job stalls there, after KILL_AFTER records): the moment when a lost abort, or offsets
committed without their output, would show."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from group_helpers import create_topic, produce, unique, wait_ready
from txn_helpers import READ_COMMITTED, READ_UNCOMMITTED, Reader

from cluster import Cluster
from flexlog.gateway.groups import coordinator_index
from flexlog.gateway.protocol import ApiKey, ErrorCode
from wire_client import WireClient

JOB = Path(__file__).parent / "eos_job.py"
TOTAL = 2000
KILL_AFTER = 400  # records the job has committed before it stalls for the kill
RUN_S = 60.0  # the bound on one case, restarts included


class Job:
    """eos_job.py as a process; `progress` is what it last said it committed, `stalled` is set
    when it stalls inside a transaction."""

    def __init__(self, args: list[str], log: Path) -> None:
        with log.open("a") as err:
            self.proc = subprocess.Popen([sys.executable, str(JOB), *args], stdout=subprocess.PIPE,
                                         stderr=err, stdin=subprocess.DEVNULL, text=True)
        self.progress = 0
        self.stalled = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("committed "):
                self.progress = int(line.split()[1])
            elif line.strip() == "stalled":
                self.stalled.set()

    def wait_stalled(self, deadline: float) -> None:
        while not self.stalled.is_set():
            assert self.proc.poll() is None, f"the job exited {self.proc.returncode} at {self.progress}"
            assert time.monotonic() < deadline, f"the job did not stall; it committed {self.progress}"
            time.sleep(0.05)
        assert KILL_AFTER <= self.progress < TOTAL

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def run_to_the_end(args: list[str], log: Path, deadline: float, job: Job | None = None) -> int:
    """Run the job (or wait for the one given) until it exits 0, starting it again after it
    dies (of a fatal error, say a fenced producer); how many times it was started again."""
    restarts = 0
    while True:
        job = job or Job(args, log)
        try:
            code = job.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            job.stop()
            raise AssertionError(f"the job did not finish in time:\n{log.read_text()[-3000:]}") from None
        if code == 0:
            return restarts
        restarts += 1
        assert restarts <= 5, f"the job died {restarts} times:\n{log.read_text()[-3000:]}"
        job = None


def assert_exactly_once(bootstrap: str, sink: str, inputs: list[bytes]) -> None:
    reader = Reader(bootstrap, [sink], READ_COMMITTED)
    try:
        deadline = time.monotonic() + 30
        while len(reader.records) < len(inputs) and time.monotonic() < deadline:
            reader.poll(0.2)
        reader.poll(1.0)  # for a duplicate to show up
    finally:
        reader.close()
    counts = reader.counts()
    expected = Counter(b"out-" + v for v in inputs)
    assert not counts - expected, f"twice or unknown: {sorted((counts - expected).elements())[:20]}"
    assert counts == expected, f"missing: {sorted((expected - counts).elements())[:20]}"


def prepare(bootstrap: str) -> tuple[str, str, list[bytes]]:
    source, sink = create_topic(bootstrap), create_topic(bootstrap)
    inputs = [b"%05d" % i for i in range(TOTAL)]
    produce(bootstrap, source, inputs)
    return source, sink, inputs


def test_the_job_killed_mid_run_and_started_again(gateways, tmp_path):
    _, addresses = gateways
    bootstrap = ",".join(addresses)
    source, sink, inputs = prepare(addresses[0])
    args = [bootstrap, source, sink, unique("eos-g"), unique("eos-tx"), str(TOTAL)]
    log = tmp_path / "job.log"
    deadline = time.monotonic() + RUN_S
    job = Job([*args, str(KILL_AFTER), str(tmp_path / "never")], log)
    try:
        job.wait_stalled(deadline)
        job.proc.send_signal(signal.SIGKILL)
    finally:
        job.stop()
    run_to_the_end(args, log, deadline)
    assert_exactly_once(addresses[0], sink, inputs)
    # The killed job's last transaction did reach the log (it was aborted, not lost).
    everything = Reader(addresses[0], [sink], READ_UNCOMMITTED)
    try:
        everything.until(lambda values: len(values) > len(inputs))
    finally:
        everything.close()


def transaction_coordinator(addresses: list[str], transactional_id: str) -> int:
    """Which gateway FindCoordinator names for a transactional id (its index in addresses)."""
    client = WireClient(addresses[0])
    try:
        found = client.call(ApiKey.FIND_COORDINATOR, 1, {"key": transactional_id, "key_type": 1})
    finally:
        client.close()
    assert found["error_code"] == ErrorCode.NONE, found
    return addresses.index(f"{found['host']}:{found['port']}")


def test_the_coordinating_gateway_killed_mid_run_and_restarted(gateways, tmp_path):
    cluster: Cluster
    cluster, addresses = gateways
    source, sink, inputs = prepare(addresses[0])
    transactional_id = unique("eos-tx")
    victim = transaction_coordinator(addresses, transactional_id)
    group = unique("eos-g")
    while coordinator_index(group, len(addresses)) != victim:  # the same gateway coordinates both
        group = unique("eos-g")
    args = [",".join(addresses), source, sink, group, transactional_id, str(TOTAL)]
    log = tmp_path / "job.log"
    go_on = tmp_path / "go-on"
    deadline = time.monotonic() + RUN_S
    job = Job([*args, str(KILL_AFTER), str(go_on)], log)
    try:
        job.wait_stalled(deadline)
        gateway = cluster.config.gateways[victim]
        cluster.kill(gateway.name, signal.SIGKILL)
        time.sleep(1.0)
        cluster.start_process("gateway", gateway.name)
        wait_ready(gateway.advertised)
        go_on.touch()
        run_to_the_end(args, log, deadline, job)
    finally:
        job.stop()
    assert_exactly_once(addresses[0], sink, inputs)
