"""Autobahn TestSuite conformance harness for wskit: ``python -m autobahn_suite --help``."""
