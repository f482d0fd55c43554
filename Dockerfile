# kawa container image: `kawa` reads /fluentd/etc/fluent.conf by default (a Fluentd ConfigMap
# mount works unchanged), else /etc/kawa/kawa.conf or /etc/kawa/fluent.conf; `-c PATH` overrides.
# Build: docker build -t kawa:0.1.0 .

# ---- build: install kawa and its dependencies into a venv (wheels only, no compiler needed) ----
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# the aws extra brings botocore for the cloudwatch_logs output; dependencies only as wheels,
# so no compiler is ever needed (kawa itself is built from this source)
RUN python -m venv /opt/kawa \
 && /opt/kawa/bin/pip install --only-binary=:all: --no-binary=kawa ".[aws]" \
 && /opt/kawa/bin/pip uninstall --yes pip setuptools wheel || true

# ---- runtime: the same base (the venv's python links to it), the venv, a non-root user ----
FROM python:3.11-slim
RUN groupadd --system --gid 10001 kawa \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/kawa --shell /usr/sbin/nologin kawa \
 && mkdir -p /fluentd/etc /fluentd/log /etc/kawa /var/lib/kawa \
 && chown 10001:10001 /fluentd/log /var/lib/kawa
COPY --from=build /opt/kawa /opt/kawa
ENV PATH=/opt/kawa/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# numeric, so Kubernetes' runAsNonRoot can verify it
USER 10001:10001
WORKDIR /var/lib/kawa
# health endpoints (/healthz, /readyz) for Kubernetes probes
EXPOSE 24220
ENTRYPOINT ["kawa"]
