"""Test-side stand-ins for external services, reachable on loopback only."""
