"""Deal and ticket preview cards per room, and the poll endpoint the inbox calls."""
