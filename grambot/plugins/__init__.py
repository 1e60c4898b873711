"""Plugin machinery: definitions, lifecycle stages and events."""
