"""Append-only, hash-chained audit log."""

from cdp.audit import service

__all__ = ["service"]
