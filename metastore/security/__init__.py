"""Transport security and service limits.

Modules, one job each:

- ``tls``: TLS files -> pyOpenSSL contexts that reload when the files
  change; the checks on a peer certificate (CA, allowed CN or hostname).
- ``selfsigned``: ``--auto-tls``: a self-signed certificate for tests.
- ``peer_token``: the challenge/response that proves a peer knows the
  cluster secret of ``--peer-token-file`` (never the secret on the wire).
- ``refusals``: one log line per refused address per interval, never a flood.
- ``limits``: per-client token buckets and connection caps.
"""
