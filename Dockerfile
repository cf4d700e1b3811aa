# The astrodb and aligner command lines in a container; see docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY astrodb ./astrodb
COPY aligner ./aligner
COPY migrations ./migrations
RUN pip install --no-cache-dir .
# astrodb serve listens here (give --host 0.0.0.0 inside the container, as docker-compose.yml does)
EXPOSE 8000
ENTRYPOINT ["astrodb"]
CMD ["--help"]
