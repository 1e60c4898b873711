"""The contract a plugin author writes against: `Plugin` (definition), `PluginApi` (api) and
the runtime helpers behind it (context), the registrar, health, the durable handles
(`api.store`, `api.schedule`, `api.inbox`) and execute-style plugins. Plugin code imports these
names from `grambot` itself."""
