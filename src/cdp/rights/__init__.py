"""Data-subject rights (PIPL arts. 44-50): verification, requests, access bundles, erasure."""
