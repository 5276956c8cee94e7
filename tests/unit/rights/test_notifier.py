"""The notifiers: outbox (kept for `cdp notifier outbox`), SMTP and a signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from cdp.config import Settings
from cdp.notifier import Message, NotDelivered, make_notifier
from cdp.notifier import smtp as smtp_module
from cdp.notifier.outbox import Outbox
from cdp.notifier.smtp import SmtpNotifier
from cdp.notifier.webhook import SIGNATURE_HEADER, WebhookNotifier

AT = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
MAIL = Message("email", "li.na@example.cn", "验证码", "您的验证码是 123456", AT)
SMS = Message("sms", "+8613900001111", "验证码", "123456", AT)


def test_outbox_keeps_messages_by_recipient(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "state" / "outbox.jsonl")
    box.send(MAIL)
    box.send(SMS)
    assert [m["to"] for m in box.messages()] == ["li.na@example.cn", "+8613900001111"]
    [only] = box.messages("+8613900001111")
    assert only["channel"] == "sms" and only["body"] == "123456"
    assert (tmp_path / "state" / "outbox.jsonl").stat().st_mode & 0o777 == 0o600
    assert Outbox(tmp_path / "none.jsonl").messages() == []


def test_make_notifier_follows_the_setting(tmp_path: Path) -> None:
    assert make_notifier(Settings(data_dir=tmp_path)).name == "outbox"
    assert make_notifier(Settings(data_dir=tmp_path, notifier="smtp")).name == "smtp"
    hook = Settings(notifier="webhook", notifier_webhook_url="https://sms.example.cn/send")
    assert make_notifier(hook).name == "webhook"
    with pytest.raises(ValueError, match="WEBHOOK_URL"):
        make_notifier(Settings(notifier="webhook"))
    with pytest.raises(ValueError, match="one of"):
        make_notifier(Settings(notifier="pigeon"))


class _FakeSmtp:
    sent: list[EmailMessage] = []
    calls: list[str] = []

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.calls.append(f"connect {host}:{port}")

    def __enter__(self) -> _FakeSmtp:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def starttls(self) -> None:
        self.calls.append("starttls")

    def login(self, user: str, password: str) -> None:
        self.calls.append(f"login {user}")

    def send_message(self, message: EmailMessage) -> None:
        self.sent.append(message)


def test_smtp_sends_mail_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smtp_module.smtplib, "SMTP", _FakeSmtp)
    settings = Settings(
        smtp_host="relay.example.cn", smtp_username="cdp", smtp_sender="no-reply@example.cn"
    )
    SmtpNotifier(settings).send(MAIL)
    assert _FakeSmtp.calls == ["connect relay.example.cn:587", "starttls", "login cdp"]
    [mail] = _FakeSmtp.sent
    assert mail["To"] == "li.na@example.cn" and mail["From"] == "no-reply@example.cn"
    assert "123456" in mail.get_content()
    with pytest.raises(NotDelivered, match="e-mail only"):
        SmtpNotifier(settings).send(SMS)


def test_smtp_failure_names_no_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kw: Any) -> None:
        raise ConnectionRefusedError("li.na@example.cn refused")

    monkeypatch.setattr(smtp_module.smtplib, "SMTP", refuse)
    with pytest.raises(NotDelivered) as caught:
        SmtpNotifier(Settings()).send(MAIL)
    assert "li.na" not in str(caught.value) and "123456" not in str(caught.value)


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(500 if b"fail" in body else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/send", received
    server.shutdown()


def test_webhook_posts_signed_json(gateway: tuple[str, list[Any]]) -> None:
    url, received = gateway
    WebhookNotifier(url, "s3cret").send(SMS)
    [(headers, body)] = received
    assert json.loads(body)["to"] == "+8613900001111"
    mac = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={mac}"
    with pytest.raises(NotDelivered):
        WebhookNotifier(url, None).send(Message("sms", "+861", "x", "fail", AT))
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier("file:///etc/passwd", None)
