"""Append-only, hash-chained audit log.

`service` is imported on first use, so that `cdp.audit.chain` and `cdp.audit.verify` (the
offline verifier) load without SQLAlchemy or the rest of the application.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cdp.audit import service

__all__ = ["service"]


def __getattr__(name: str) -> Any:
    if name == "service":
        return importlib.import_module("cdp.audit.service")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
