# One image for every process of the system; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY shared_contracts shared_contracts
COPY service_kit service_kit
COPY crm_service crm_service
COPY omni_service omni_service
COPY migrations migrations
RUN pip install --no-cache-dir .
RUN useradd --system --uid 10001 app
USER app
EXPOSE 8000
