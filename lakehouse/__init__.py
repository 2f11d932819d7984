"""Lakehouse platform core: settings, native stack, CLI."""
