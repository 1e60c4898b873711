"""Built-in plugins. Each folder holds a plugin.json and its entry module; they are loaded by
grambot into per-instance namespaces, never imported from here."""
