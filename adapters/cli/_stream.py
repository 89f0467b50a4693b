"""``ledger stream``: the log published to Kafka."""

from __future__ import annotations

import threading

import click

from ledger.adapters.cli._common import _open, _stopped_by_sigterm
from ledger.errors import StoreUnavailable


@click.command("stream")
@click.option(
    "--kafka",
    "bootstrap",
    envvar="LEDGER_KAFKA_BOOTSTRAP",
    required=True,
    help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT] (env LEDGER_KAFKA_BOOTSTRAP).",
)
@click.option("--topic", required=True, help="Topic to publish the events to.")
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
