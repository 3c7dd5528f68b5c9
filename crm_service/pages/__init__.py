"""The CRM's record pages (``/deals/{id}``, ``/tickets/{id}``: the ``external_url`` the
inbox card links to) and their sign-in with a company access token."""
