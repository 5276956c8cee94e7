"""Messages POSTed as JSON to a URL (an SMS or e-mail gateway), signed with HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request

from cdp.notifier import Message, NotDelivered

SIGNATURE_HEADER = "X-Cdp-Signature"


class WebhookNotifier:
    name = "webhook"

    def __init__(self, url: str, secret: str | None, *, timeout: float = 10.0) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("the notifier webhook URL must be http(s)")
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def send(self, message: Message) -> None:
        body = json.dumps(
            {
                "channel": message.channel,
                "to": message.to,
                "subject": message.subject,
                "body": message.body,
                "at": message.at.isoformat(),
            },
            ensure_ascii=False,
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.secret:
            mac = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={mac}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                if response.status >= 300:
                    raise NotDelivered(f"webhook answered {response.status}")
        except (OSError, urllib.error.URLError) as exc:
            raise NotDelivered(f"webhook unreachable or refused ({type(exc).__name__})") from None
