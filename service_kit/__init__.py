"""Infrastructure the CRM and Omni services share, so neither keeps its own copy.

What belongs here: plumbing with no domain meaning and no wire format — the database
column types, engine and session set-up, after-commit hooks, the domain-error family
and its JSON handler, and the Alembic environment both migration trees run.

What does not: anything that crosses the wire between the services (event types,
payloads, signatures live in ``shared_contracts``), and anything one service owns — its
``Base`` and ``MetaData``, its settings, its request dependencies. Both services import
this package; it imports neither of them.
"""
