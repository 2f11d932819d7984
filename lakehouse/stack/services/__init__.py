"""One module per server of the native stack; each defines `SERVICE = Service(...)`.

The registry (lakehouse.stack.registry) imports every module here whose name does not
start with an underscore. docs/architecture.md says how to add one.
"""
