"""How plugin code runs inside the engine's process: every call under a deadline (`stages`,
with the worker threads of sync stages), what it starts recorded and cancelled at unload
(`tracking`), what it registers guarded (`guards`), its modules in a namespace of their own
(`loader`, `allowlist`) and its resource limits (`limits`). Whatever plugin code raises is
turned into an ordinary exception that names the instance (docs/architecture.md#containment).
Nothing here knows the lifecycle (`grambot.core`) or the plugin contract (`grambot.contract`)."""
