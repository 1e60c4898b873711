"""The `grambot run` process around the engine: the runtime loop, the settings watcher,
status.json, control requests, the engine lock, logging, signals, systemd notify and the loop
watchdog. It talks to `grambot.engine.Engine`, never to the lifecycle core."""
