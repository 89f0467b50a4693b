"""kafka-python is imported on first use, and its import-time warnings do not fail a
host that runs with ``-W error``."""

from __future__ import annotations

import subprocess
import sys


def test_the_kafka_adapters_import_and_load_kafka_under_warnings_as_errors() -> None:
    code = (
        "import sys\n"
        "import ledger.adapters.kafka_relay, ledger.adapters.kafka_consumer\n"
        "assert 'kafka' not in sys.modules\n"
        "from ledger.adapters.kafka_import import kafka\n"
        "print(kafka().errors.KafkaError.__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "KafkaError"
