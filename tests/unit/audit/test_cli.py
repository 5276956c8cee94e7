"""`cdp audit checkpoint | export | public-key | verify`: the round trip an officer and an
auditor make, with exit codes, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.audit.factories import fill, lines
from typer.testing import CliRunner

from cdp.api import Runtime
from cdp.audit import verify
from cdp.cli import app as cli
from cdp.config import Settings


@pytest.fixture
def env(settings: Settings, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    """The CLI pointed at the test database, data dir and key store."""
    for name, value in {
        "CDP_DATABASE_URL": settings.database_url,
        "CDP_KEYSTORE_URL": settings.keystore_url,
        "CDP_DATA_DIR": str(settings.data_dir),
        "CDP_JWT_SECRET": settings.jwt_secret or "",
        "CDP_LOG_JSON": "false",
        "CDP_AUDIT_CHECKPOINT_EVERY": "100",
    }.items():
        monkeypatch.setenv(name, value)
    return runtime


def _cdp(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_then_verify_with_the_public_key_file(
    env: Runtime, tmp_path: Path, fmt: str
) -> None:
    fill(env, 250)
    code, out = _cdp("audit", "checkpoint")
    assert code == 0 and "2 checkpoint(s) signed" in out, out
    export, keys = tmp_path / f"audit.{fmt}", tmp_path / "keys.pem"
    code, out = _cdp("audit", "export", "--out", str(export), "--format", fmt)
    assert code == 0 and export.exists(), out
    code, out = _cdp("audit", "public-key", "--out", str(keys))
    assert code == 0 and keys.read_text().count("BEGIN PUBLIC KEY") == 1, out
    code, out = _cdp("audit", "verify", str(export), "--public-key", str(keys))
    assert code == 0 and out.startswith("OK: export verifies: 251 entries"), out
    # The auditor's own copy of the verifier, without the application, agrees.
    assert verify.main([str(export), "--public-key", str(keys)]) == 0

    rows = lines(export)
    rows[1 if fmt == "jsonl" else 2] = rows[1 if fmt == "jsonl" else 2].replace(
        b"client:cli_bbbbbbbbbbbbbbbb", b"client:cli_cccccccccccccccc"
    )
    export.write_bytes(b"".join(rows))
    code, out = _cdp("audit", "verify", str(export), "--public-key", str(keys))
    assert code == 1 and "TAMPERED: first bad sequence 2: hash does not match" in out, out


def test_filtered_export_and_unusable_inputs(env: Runtime, tmp_path: Path) -> None:
    fill(env, 120)
    export, keys = tmp_path / "a.jsonl", tmp_path / "keys.pem"
    code, out = _cdp(
        "audit", "export", "--out", str(export), "--action", "consent.record", "--from",
        "2020-01-01T00:00:00+08:00",
    )  # fmt: skip
    assert code == 0, out
    _cdp("audit", "public-key", "--out", str(keys))
    code, out = _cdp("audit", "verify", str(export), "--public-key", str(keys))
    assert code == 0 and "filtered export verifies: 40 entries, 81 skipped" in out, out
    assert _cdp("audit", "export", "--out", str(export), "--from", "yesterday")[0] == 2
    assert _cdp("audit", "export", "--out", str(export), "--format", "xml")[0] == 2
    assert _cdp("audit", "verify", str(export), "--public-key", str(tmp_path / "none"))[0] == 2
    (tmp_path / "bad.pem").write_text("not a key")
    assert _cdp("audit", "verify", str(export), "--public-key", str(tmp_path / "bad.pem"))[0] == 2
    other = tmp_path / "other.pem"
    other.write_text(
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n"
        "-----END PUBLIC KEY-----\n"
    )
    code, out = _cdp("audit", "verify", str(export), "--public-key", str(other))
    assert code == 1 and "not a trusted public key" in out, out


def test_the_verifier_needs_only_the_standard_library_and_cryptography() -> None:
    import subprocess
    import sys

    script = (
        "import sys, cdp.audit.verify\n"
        "top = {m.split('.')[0] for m in sys.modules}\n"
        "bad = top & {'sqlalchemy', 'fastapi', 'pydantic', 'starlette', 'typer', 'alembic'}\n"
        "extra = {m for m in sys.modules if m.startswith('cdp.') and m not in\n"
        "         ('cdp.audit', 'cdp.audit.chain', 'cdp.audit.verify')}\n"
        "assert not bad and not extra, (bad, extra)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
