# One image for every process of the system; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# The pinned dependencies first, in a layer of their own: a source change does not
# reinstall them (`make lock` regenerates the file from pyproject.toml).
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
# Then the project itself, without resolving anything again. The migration trees ship
# inside the packages, so `crm-parity migrate` works from any folder.
COPY pyproject.toml README.md alembic.ini ./
COPY shared_contracts shared_contracts
COPY service_kit service_kit
COPY crm_service crm_service
COPY omni_service omni_service
RUN pip install --no-cache-dir --no-deps .
RUN useradd --system --uid 10001 app
USER app
EXPOSE 8000 8001 9100
