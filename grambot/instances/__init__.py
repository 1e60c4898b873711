"""Per-instance module namespaces live here: grambot.instances.<instanceId>__<generation>."""
