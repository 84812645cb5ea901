#!/usr/bin/env bash
# Builds the separate virtual environment that `make bench-compare` runs the LiteLLM
# proxy from. LiteLLM is what we compare against, never a dependency of tokenfactory, so
# it lives apart from .venv.
#
# `litellm[proxy]==1.110.2` cannot be installed here: its `proxy` extra requires
# `litellm-proxy==1.110.2`, which the package index does not have. The proxy server
# itself ships inside the `litellm` wheel (litellm/proxy, and the `litellm` command in
# litellm_cli), so we install that wheel and then the `proxy` extra's other requirements
# ourselves, each pinned to the version pip resolved for them here. Two of them are not
# on the index at the version the extra names, and get the nearest one that is:
# litellm-enterprise 0.1.83 (wants 0.1.83.post1) and litellm-proxy-extras 0.4.110
# (wants 0.4.114.post1; it only carries the Prisma migrations, unused without a
# database). Prisma is left out: it needs engine binaries from binaries.prisma.sh,
# which cannot be reached from here (see docs/benchmarks.md).
set -euo pipefail

VENV="${1:-.venv-litellm}"
PYTHON="${PYTHON:-python3}"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet \
    litellm==1.110.2 \
    litellm-enterprise==0.1.83 \
    litellm-proxy-extras==0.4.110 \
    apscheduler==3.11.3 \
    azure-identity==1.27.0 \
    azure-storage-blob==12.31.1 \
    backoff==2.2.1 \
    backports-zstd==1.8.0 \
    boto3==1.44.8 \
    cryptography==50.0.2 \
    expression==5.8.0 \
    fastapi==0.165.0 \
    fastapi-sso==0.23.0 \
    granian==2.8.9 \
    gunicorn==23.0.0 \
    hiredis==3.5.0 \
    httpx2==2.16.2 \
    inquirerpy==0.3.4 \
    mcp==2.3.0 \
    orjson==3.13.0 \
    polars==1.44.2 \
    pydantic==2.14.4 \
    pyjwt==2.15.1 \
    pynacl==1.6.2 \
    pyroscope-io==0.8.16 \
    python-multipart==0.0.34 \
    pyyaml==6.0.4 \
    restrictedpython==8.5 \
    rich==13.9.4 \
    rq==2.12.0 \
    semver==3.1.2 \
    soundfile==0.14.0 \
    starlette==1.10.0 \
    tomlkit==0.15.2 \
    uvicorn==0.54.0 \
    uvloop==0.23.0 \
    websockets==15.0.1 \
    py-spy==0.4.3
# py-spy (a sampling profiler) is here so that `bench-compare --profile` can look inside
# the gateways without touching the project's own environment.
"$VENV/bin/python" -c "import litellm.proxy.proxy_server; print('litellm proxy', '1.110.2 ok')"
