"""Per-instance secrets: the store (`store`: `.scout/secrets.json` or the system keyring,
chosen in `backends`) and the values the process is handed by its surroundings (`sources`:
environment variables and credential files, ahead of the store)."""
