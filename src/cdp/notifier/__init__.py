"""Sending one-time codes and notices to customers: an interface and three notifiers.

`outbox` (the default) is the development stand-in for a mailbox: it keeps every message,
recipient address and code included, in a file under the data directory for
`cdp notifier outbox`. `smtp` sends e-mail through a relay; `webhook` POSTs JSON to a URL
(e.g. an SMS gateway). No notifier logs an address, a code or a message body.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from cdp.config import Settings

Channel = Literal["email", "sms"]
NOTIFIERS = ("outbox", "smtp", "webhook")


@dataclass(frozen=True, slots=True)
class Message:
    """One message to one recipient; `to` is an e-mail address or an E.164 phone number."""

    channel: Channel
    to: str
    subject: str
    body: str
    at: datetime


class NotDelivered(Exception):
    """A message could not be handed over; the text names no address and no content."""


class Notifier(Protocol):
    name: str

    def send(self, message: Message) -> None:
        """Hand the message over, or raise NotDelivered."""


def make_notifier(settings: Settings) -> Notifier:
    """The notifier CDP_NOTIFIER names."""
    kind = settings.notifier.strip().lower()
    if kind == "outbox":
        from cdp.notifier.outbox import Outbox

        return Outbox(settings.data_dir / "outbox.jsonl")
    if kind == "smtp":
        from cdp.notifier.smtp import SmtpNotifier

        return SmtpNotifier(settings)
    if kind == "webhook":
        from cdp.notifier.webhook import WebhookNotifier

        if not settings.notifier_webhook_url:
            raise ValueError("CDP_NOTIFIER=webhook needs CDP_NOTIFIER_WEBHOOK_URL")
        return WebhookNotifier(settings.notifier_webhook_url, settings.notifier_webhook_secret)
    raise ValueError(f"CDP_NOTIFIER must be one of {', '.join(NOTIFIERS)}")


__all__ = ["NOTIFIERS", "Channel", "Message", "NotDelivered", "Notifier", "make_notifier"]
