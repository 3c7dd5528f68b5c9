"""The CRM webhook receiver: verify, de-duplicate, route, apply."""
