"""The credentials both APIs take, declared once as OpenAPI security schemes.

The services read and check the values themselves (one JSON 401 for every failure);
these objects only read the headers and put the schemes in ``/openapi.json``, so each
operation documents what it needs: the tenant's bearer token, the operator's
``X-Admin-Key``, or the company's ``X-Crm-Api-Key``.
"""

from __future__ import annotations

from fastapi.security import APIKeyHeader, HTTPBearer

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearerToken",
    description="CRM: a company access token (POST /api/v3.1/teams/company_token). "
    "Omni: the organization's API token.",
)
ADMIN_KEY = APIKeyHeader(
    name="X-Admin-Key",
    auto_error=False,
    scheme_name="adminKey",
    description="The operator key of the service (CRM_ADMIN_KEY / OMNI_ADMIN_KEY).",
)
CRM_API_KEY = APIKeyHeader(
    name="X-Crm-Api-Key",
    auto_error=False,
    scheme_name="crmApiKey",
    description="The company's API key (from POST /admin/teams), for a new access token.",
)
