"""Events plugins emit (`event`: `PluginEvent`) and the one sequential queue that delivers them
to their handlers in order (`queue`)."""
