"""Admin API of Omni (``X-Admin-Key``): create organizations, rotate their secret."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from omni_service.database import SessionDep, utcnow
from omni_service.organizations import service
from omni_service.organizations.cache import OrganizationCache
from omni_service.organizations.dependencies import AdminDep
from omni_service.organizations.schemas import (
    OrganizationCreate,
    OrganizationCreated,
    OrganizationOut,
    WebhookSecretUpdate,
)
from service_kit.bounds import PathId
from service_kit.database import on_commit

router = APIRouter(prefix="/admin/organizations", tags=["admin"], dependencies=[AdminDep])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_organization(body: OrganizationCreate, session: SessionDep) -> OrganizationCreated:
    """Create an organization (a chat-inbox tenant) and answer 201 with its API token.

    For the operator, as `crm-parity orgs create` is. `company_id` is the CRM team's
    `external_company_id`: it is how a CRM event finds its organization. `webhook_secret`
    is the secret the CRM signs that team's events with. The token is shown only here (it
    is stored as a digest); it is the bearer token for the organization's inbox and for
    the CRM's calls to the message-history API. A `company_id` that already has an
    organization is 409.
    """
    organization, token = await service.create(
        session, name=body.name, company_id=body.company_id, webhook_secret=body.webhook_secret
    )
    return OrganizationCreated(
        id=organization.id,
        name=organization.name,
        company_id=organization.company_id,
        api_token=token,
    )


@router.put("/{organization_id}/webhook_secret")
async def rotate_webhook_secret(
    organization_id: PathId, body: WebhookSecretUpdate, session: SessionDep, request: Request
) -> OrganizationOut:
    """Make a new webhook secret the organization's current one.

    The previous secret keeps verifying events for the rotation grace period
    (`OMNI_SECRET_ROTATION_GRACE_SECONDS`), so the CRM's link can switch before or after
    this. Setting the current secret again changes nothing. The answer never echoes a
    secret. An unknown organization is 404.
    """
    organization = await service.rotate_webhook_secret(
        session, organization_id, body.webhook_secret, now=utcnow()
    )
    cache: OrganizationCache = request.app.state.organization_cache
    company_id = organization.company_id

    async def forget() -> None:
        # This process drops its copy; others refresh on a refused signature or expiry.
        cache.forget_company(company_id)

    on_commit(session, forget)
    return OrganizationOut(
        id=organization.id, name=organization.name, company_id=organization.company_id
    )
