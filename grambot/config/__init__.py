"""What the engine is told: `.scout/settings.json` (read, validated and frozen in `settings`,
edited under a lock in `edit`), each plugin's `plugin.json` (`descriptor`), and which plugins
exist (`catalog`, with installed `packages` and `custom` folders). Nothing here runs plugin
code."""
