"""Bundled conformance suites and the runner that checks the emulator against them."""
