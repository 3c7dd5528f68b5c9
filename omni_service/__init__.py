"""The chat inbox backend: organizations, rooms, messages, CRM previews, received events."""
