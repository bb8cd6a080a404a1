"""``--certfile``/``--keyfile``: the server's TLS context, or one line saying why not."""

from __future__ import annotations

import ssl

#: The runtimes that serve TLS (as ``diaproto.adapters.TLS_RUNTIMES``, which this module does
#: not import: ``--help`` stays fast).
TLS_RUNTIMES = ("asyncio", "anyio", "trio", "tornado")


def server_context(
    certfile: str | None, keyfile: str | None, runtime: str
) -> ssl.SSLContext | None:
    """A server context for the certificate chain in ``certfile`` (PEM) and its key
    (``keyfile``, or in ``certfile`` too); None without ``certfile``. ValueError: why not."""
    if certfile is None:
        if keyfile is not None:
            raise ValueError("--keyfile needs --certfile (the certificate it belongs to)")
        return None
    if runtime not in TLS_RUNTIMES:
        raise ValueError(
            f"--certfile: the {runtime} runtime serves plain TCP only (its one selector loop "
            "has no TLS); use --runtime asyncio, anyio, trio or tornado, or terminate TLS at a "
            "reverse proxy"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # An encrypted key would make OpenSSL ask on the terminal (or hang in a container).
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    except FileNotFoundError as exc:
        raise ValueError(f"--certfile/--keyfile: no such file: {exc.filename}") from exc
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(
            f"--certfile {certfile}: cannot load the certificate and key: {exc}"
        ) from exc
    return context


def _no_password() -> str:
    raise ssl.SSLError("the key is encrypted: give an unencrypted key (e.g. openssl pkey)")
