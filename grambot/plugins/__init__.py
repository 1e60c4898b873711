"""Deprecated: the modules a plugin could import from here moved in 0.2 and these aliases go
in 0.3. Import from `grambot` (`from grambot import Plugin, PluginApi, PluginEvent`)."""
