"""Rules: turn readings and gate events into alert state changes (signals), in event time."""
