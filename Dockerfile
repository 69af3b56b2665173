# One image for every process of the Procfile: the web by default (CMD below);
# docker-compose.yml gives the worker, beat and Flower their commands.
#   docker build -t job-recommender .
#   docker run -p 127.0.0.1:8000:8000 -e REDIS_URL=redis://... job-recommender
# No HEALTHCHECK here: the same image runs four different processes, so each service
# declares its own check (docker-compose.yml).
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

WORKDIR /app

# dependencies first: a code change rebuilds only the layers after this one
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# a home of its own: gunicorn puts its control socket there (~/.gunicorn/gunicorn.ctl)
RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app \
        --create-home --home-dir /home/app --shell /usr/sbin/nologin app

# the code stays root's and read-only to the service; what it writes goes to /tmp or ~
COPY . .

USER 10001:10001
EXPOSE 8000 5555

# the Procfile's web; gunicorn binds 0.0.0.0:$PORT when PORT is set and no --bind is given;
# its workers' heartbeat files go to memory, not to the container's overlay disk
CMD ["gunicorn", "-c", "gunicorn.conf.py", "--worker-tmp-dir", "/dev/shm", "--timeout", "30", "webapp:create_app()"]
