"""``ledger stream``: the log published to Kafka."""

from __future__ import annotations

import re
import threading

import click

from ledger.adapters.cli._common import _open, _stopped_by_sigterm
from ledger.errors import StoreUnavailable


def _servers(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--kafka`` checked here: the client's own parser raises a bare ValueError (a
    traceback) on a port that is not a number or an unclosed ``[``."""
    for server in value.split(","):
        host, port = _host_port(server.strip())
        port_ok = port is None or (port.isascii() and port.isdigit() and 0 < int(port) < 65536)
        if not host or not port_ok:
            raise click.BadParameter(
                f"{value!r}: use HOST:PORT[,HOST:PORT] (a port 1 to 65535, "
                "an IPv6 address in brackets: [::1]:9092)",
                ctx,
                param,
            )
    return value


def _host_port(server: str) -> tuple[str, str | None]:
    if server.startswith("["):  # [IPv6]:PORT
        host, close, rest = server[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            return "", None
        return host, rest[1:] if rest else None
    if server.count(":") > 1:  # a bare IPv6 address: where would its port be?
        return "", None
    host, colon, port = server.partition(":")
    return host, port if colon else None


def _topic(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not _TOPIC.fullmatch(value) or value in (".", ".."):
        raise click.BadParameter(
            f"{value!r}: a Kafka topic is 1 to 249 of a-z, A-Z, 0-9, '.', '_', '-'", ctx, param
        )
    return value


_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")


@click.command("stream")
@click.option(
    "--kafka",
    "bootstrap",
    envvar="LEDGER_KAFKA_BOOTSTRAP",
    required=True,
    callback=_servers,
    help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT] (env LEDGER_KAFKA_BOOTSTRAP).",
)
@click.option("--topic", required=True, callback=_topic, help="Topic to publish the events to.")
@click.option("--name", default=None, help="Checkpoint name (default: the topic).")
@click.option(
    "--partitions",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Partitions when creating the topic (1 keeps log order).",
)
@click.option("--once", is_flag=True, help="Publish what is committed now, then exit.")
@click.pass_obj
def stream_cmd(
    store: str, *, bootstrap: str, topic: str, name: str | None, partitions: int, once: bool
) -> None:
    """Publish every event of the log to Kafka, resuming from a checkpoint."""
    try:
        from ledger.adapters.kafka_relay import KafkaRelay, ensure_topic  # noqa: PLC0415
    except ImportError:
        raise click.ClickException(
            "the kafka extra is not installed: pip install 'ledger-engine[kafka]'"
        ) from None
    from kafka.errors import KafkaError  # type: ignore[import-untyped]  # noqa: PLC0415

    with _open(store) as books:
        relay = KafkaRelay(books.store, bootstrap=bootstrap, topic=topic, name=name or topic)
        try:
            try:
                ensure_topic(bootstrap, topic, partitions)
                if once:
                    published = relay.catch_up()
                    click.echo(f"published {published} events; checkpoint {relay.checkpoint()}")
                    return
            except KafkaError as e:
                detail = str(e).removeprefix(f"{type(e).__name__}: ") or type(e).__name__
                raise StoreUnavailable(f"Kafka at {bootstrap}: {detail}") from None
            stop = threading.Event()
            try:
                with _stopped_by_sigterm(stop):
                    relay.run(stop)
            except KeyboardInterrupt:
                stop.set()
        finally:
            relay.close()
