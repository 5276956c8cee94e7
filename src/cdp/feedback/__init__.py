"""Feedback: surveys (CSAT, NPS, custom questions), complaints with a lifecycle, suggestions."""
