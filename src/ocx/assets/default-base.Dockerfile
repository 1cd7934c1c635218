# The base ocx uses when no custom_base_image is configured: a small Debian with the tools
# opencode shells out to.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git curl ripgrep less openssh-client \
 && rm -rf /var/lib/apt/lists/*
