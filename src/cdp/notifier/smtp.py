"""E-mail through an SMTP relay (STARTTLS by default)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from cdp.config import Settings
from cdp.notifier import Message, NotDelivered


class SmtpNotifier:
    name = "smtp"

    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout

    def send(self, message: Message) -> None:
        if message.channel != "email":
            raise NotDelivered("the smtp notifier sends e-mail only")
        mail = EmailMessage()
        mail["From"] = self.settings.smtp_sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail.set_content(message.body)
        s = self.settings
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=self.timeout) as relay:
                if s.smtp_starttls:
                    relay.starttls()
                if s.smtp_username:
                    relay.login(s.smtp_username, s.smtp_password or "")
                relay.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            raise NotDelivered(
                f"smtp relay refused or unreachable ({type(exc).__name__})"
            ) from None
