# The soak image: `soak` as the entrypoint, run as a non-root user.
#   docker build -t registry.example/soak:0.1.0 .
#   soak k8s render PROFILE --shards 4 --image registry.example/soak:0.1.0 | kubectl apply -f -
FROM python:3.11-slim

# MPLBACKEND: soak report draws PNGs without a display
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib
RUN useradd --create-home --uid 10001 --user-group soak

WORKDIR /src
COPY pyproject.toml README.md ./
COPY soak ./soak
RUN pip install . && rm -rf /src

USER 10001:10001
WORKDIR /home/soak
ENTRYPOINT ["soak"]
CMD ["--help"]
