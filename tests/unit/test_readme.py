"""The README's Python examples (```python blocks) run as written, in order, against
temporary SQLite files. Blocks that need a Kafka broker are marked ```py and are covered
by tests/integration/test_kafka.py instead."""

from __future__ import annotations

import logging
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run(tmp_path: Path, capsys: object) -> None:
    blocks = python_blocks()
    assert blocks, "the README has Python examples"
    namespace = {"__name__": "readme"}  # blocks run in order, like a reader's session
    root, ours = logging.getLogger(), logging.getLogger("ledger")
    saved = (root.level, list(root.handlers), ours.level)
    try:
        for block in blocks:
            code = re.sub(
                r'"sqlite:///(\w+)\.db"', lambda m: repr(f"sqlite:///{tmp_path}/{m[1]}.db"), block
            )
            exec(compile(code, str(README), "exec"), namespace)
    finally:  # the logging example configures logging, as an application would
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        ours.setLevel(saved[2])
