# trio-books: build a virtualenv in one stage, run it as a non-root user in a slim one.
# The config is read from /etc/trio-books/config.toml; mount your own there.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY trio_books ./trio_books
RUN python -m venv /opt/trio-books \
 && /opt/trio-books/bin/pip install --no-cache-dir .

FROM python:3.12-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin trio-books
COPY --from=build /opt/trio-books /opt/trio-books
COPY config.toml /etc/trio-books/config.toml
ENV PATH="/opt/trio-books/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    TRIO_BOOKS_CONFIG=/etc/trio-books/config.toml \
    TRIO_BOOKS_HTTP=0.0.0.0:8080
USER 10001
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["trio-books", "health", "--http", "127.0.0.1:8080"]
ENTRYPOINT ["trio-books", "run"]
