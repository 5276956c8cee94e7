"""Event tracking: native batches, the Segment HTTP API, the tracking plan and daily rollups."""
