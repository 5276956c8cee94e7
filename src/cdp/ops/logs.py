"""Structured JSON logs: request id, client id, route, status, latency; never a PI value."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_EXTRA_KEYS = ("request_id", "client_id", "route", "method", "status", "latency_ms", "event")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _EXTRA_KEYS:
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type and where it happened; its message may quote input, so no text.
            doc["exception"] = record.exc_info[0].__name__
            tb = record.exc_info[2]
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            if tb is not None:
                doc["at"] = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        return json.dumps(doc, ensure_ascii=False)


def configure(level: str = "INFO", *, json_output: bool = True) -> None:
    root = logging.getLogger("cdp")
    root.setLevel(level.upper())
    root.propagate = False
    if not any(getattr(h, "_cdp", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            JsonFormatter() if json_output else logging.Formatter("%(levelname)s %(message)s")
        )
        handler._cdp = True  # type: ignore[attr-defined]
        root.addHandler(handler)
