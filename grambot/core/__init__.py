"""The lifecycle core: one `Instance` per settings entry, a pure `plan`, the manager that
executes plans, and how plugin failures are classified (see docs/architecture.md)."""
