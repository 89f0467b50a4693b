"""``ledger import`` of hostile files, by subprocess on every store: bytes that are not
UTF-8, a line far beyond any valid one, and line breaks read the same from a file and
from stdin. Each is refused naming its line, on stderr, with exit 1, nothing applied."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.integration.test_cli import LEDGER, ledger

LINE = (
    '{"key":"%s","legs":[{"account":"a","amount":"1.00","currency":"USD"},'
    '{"account":"b","amount":"-1.00","currency":"USD"}]}'
)


def run_bytes(url: str, *args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*LEDGER, "--store", url, *args], check=False, capture_output=True, input=stdin, timeout=120
    )


def exported_keys(url: str) -> list[str]:
    done = ledger(url, "export")
    if done.returncode:  # nothing imported, no store file
        return []
    return [json.loads(x)["key"] for x in done.stdout.splitlines() if "legs" in x]


def test_bytes_that_are_not_utf_8_are_refused_naming_the_line(
    store_url: str, tmp_path: Path
) -> None:
    data = b"\n".join(
        [(LINE % "u1").encode(), (LINE % "u2").encode().replace(b'"b"', b'"b\xff"'), b""]
    )
    source = tmp_path / "bad.jsonl"
    source.write_bytes(data)
    for done in (
        run_bytes(store_url, "import", str(source), stdin=b""),
        run_bytes(store_url, "import", "-", stdin=data),
    ):
        assert done.returncode == 1
        assert done.stdout == b""
        error = done.stderr.decode()
        assert error.count("\n") == 1, error
        assert error.startswith("ledger: invalid_command: "), error
        assert "not UTF-8 text" in error and "line 2" in error, error
    assert exported_keys(store_url) == []


def test_a_line_beyond_the_limit_is_refused_without_reading_it_whole(
    store_url: str, tmp_path: Path
) -> None:
    padded = json.loads(LINE % "big")
    padded["metadata"] = {"x": "y" * (2 << 20)}  # 2 MiB: far beyond any valid line
    source = tmp_path / "big.jsonl"
    source.write_text("\n".join([LINE % "ok", json.dumps(padded), LINE % "ok2"]) + "\n")
    done = ledger(store_url, "import", str(source))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0].startswith("ledger: line 2: line is longer than "), lines
    assert lines[1].startswith("ledger: invalid_import: nothing applied: 1 invalid line")
    assert exported_keys(store_url) == []
    skipped = ledger(store_url, "import", str(source), "--skip-invalid", "--format", "json")
    assert skipped.returncode == 1
    report = json.loads(skipped.stdout)
    assert (report["applied"], report["invalid"], report["lines"]) == (2, 1, 3)
    assert exported_keys(store_url) == ["ok", "ok2"]


def test_a_file_and_stdin_split_lines_alike(tmp_path: Path) -> None:
    # JSON Lines ends a line with \n (a \r before it is whitespace); a lone \r ends
    # none, from a file as from stdin, so both report the same lines.
    data = (
        (LINE % "c1") + "\r\n" + (LINE % "c2") + "\r\n\r\n" + (LINE % "c3") + "\r" + (LINE % "c4")
    ).encode()
    source = tmp_path / "crlf.jsonl"
    source.write_bytes(data)
    from_file = run_bytes(f"sqlite:///{tmp_path}/f.db", "import", str(source), stdin=b"")
    from_stdin = run_bytes(f"sqlite:///{tmp_path}/s.db", "import", "-", stdin=data)
    assert (from_file.returncode, from_file.stdout, from_file.stderr) == (
        from_stdin.returncode,
        from_stdin.stdout,
        from_stdin.stderr,
    )
    assert from_file.returncode == 1
    assert from_file.stderr.decode().startswith("ledger: line 4: Invalid JSON")
