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
