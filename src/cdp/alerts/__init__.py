"""Alerts: rules, evaluation runs, open alerts and their signed webhook delivery."""
