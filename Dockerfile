# The astrodb command line in a container; see docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY astrodb ./astrodb
COPY migrations ./migrations
RUN pip install --no-cache-dir .
ENTRYPOINT ["astrodb"]
CMD ["--help"]
