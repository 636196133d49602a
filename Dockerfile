# The image of the master and the workers (docker-compose.yml builds it for both).
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY core core
COPY worker worker
COPY master master
COPY dashboard dashboard
COPY examples examples
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --create-home hpsearch \
    && mkdir /checkpoints /datasets \
    && chown hpsearch /checkpoints /datasets

USER hpsearch
ENV CHECKPOINT_DIR=/checkpoints
EXPOSE 8000
CMD ["hpsearch", "master", "--host", "0.0.0.0", "--port", "8000"]
