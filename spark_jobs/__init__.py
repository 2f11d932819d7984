"""Spark jobs of the platform. Each is a service module called by the `lakehouse` CLI."""
