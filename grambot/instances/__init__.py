"""Not code: the parent of every plugin instance's import namespace,
`grambot.instances.<instanceId>__<generation>`, which grambot.containment.loader creates (a
plugin's own modules live under it, so two instances never share a module)."""
