"""The development notifier: messages kept in a JSON Lines file under the data directory.

It holds recipient addresses and one-time codes in clear, as a mailbox would: use it for
development and tests only (CDP_NOTIFIER=smtp or webhook in production).
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from cdp.notifier import Message

# The newest messages kept; older ones are dropped when the file is rewritten.
KEEP = 1000
_lock = threading.Lock()


class Outbox:
    name = "outbox"

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: Message) -> None:
        line = json.dumps(
            {
                "at": message.at.isoformat(),
                "channel": message.channel,
                "to": message.to,
                "subject": message.subject,
                "body": message.body,
            },
            ensure_ascii=False,
        )
        with _lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write(line + "\n")
            self._trim()

    def _trim(self) -> None:
        if self.path.stat().st_size < 512 * 1024:
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()[-KEEP:]
        self.path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")

    def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        """Kept messages, oldest first; only those to `to` when given (compared as written
        by the sender: a lower-case e-mail or an E.164 phone number)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if to is None or item.get("to") == to:
                item["at"] = datetime.fromisoformat(item["at"]).isoformat()
                out.append(item)
        return out
