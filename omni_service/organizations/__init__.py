"""Tenants of the chat inbox: the CRM company they map to, their signing secret, their token."""
