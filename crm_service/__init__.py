"""The CRM backend: teams, contacts, deals, tickets, timeline; outbox + webhook delivery."""
