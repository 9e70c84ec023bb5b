"""Alerts: a lifecycle people can trust (pending, firing, acknowledged, resolved), and notifications."""
