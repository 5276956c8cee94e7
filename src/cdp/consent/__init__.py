"""Consent records, subject status (minor, restriction, opt-out) and the decision built on them."""
