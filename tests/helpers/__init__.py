"""Helpers shared by test suites (tiny scene generator, ...)."""
