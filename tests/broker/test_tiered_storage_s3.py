"""Tiered storage against a real S3-API server: moto's, as its own process on 127.0.0.1. The
broker's store is ``s3://<bucket>/<prefix>``, reached through obstore with the usual ``AWS_*``
environment variables (path-style requests, plain HTTP). Rolled segments land in the bucket,
local retention deletes them from disk, and clients read every record from offset 0 exactly,
before and after a kill -9."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.broker.test_tiered_storage import (
    TIERED,
    TOPIC_CONFIG,
    _assert_exact,
    _create,
    _local_segments,
    _produce,
    _read,
    _wait,
)
from tests.broker_process import free_port

BUCKET = "artesian-tiered"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


class S3Server:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_REGION"],
        )

    def env(self) -> dict[str, str]:
        """The broker's environment for obstore's S3 store."""
        return {**CREDENTIALS, "AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true"}

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"moto did not answer:\n{log_path.read_text()}") from None
                time.sleep(0.05)
        server = S3Server(endpoint)
        server.client.create_bucket(Bucket=BUCKET)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_tiered_storage_on_an_s3_api_server(broker_factory: Any, s3_server: S3Server) -> None:
    prefix = "cluster-a/tiered"
    broker = broker_factory(
        {**TIERED, "rsm.config.store.url": f"s3://{BUCKET}/{prefix}"}, env=s3_server.env()
    )
    topic, n = "s3tiered", 3000  # about 3 MiB: two rolled segments go to the bucket
    _create(broker.bootstrap, topic, TOPIC_CONFIG)
    _produce(broker.bootstrap, topic, 0, n)
    _wait(lambda: len(_local_segments(broker, topic)) == 1, "local segments to be deleted")

    keys = s3_server.keys(prefix + "/")
    logs = [k for k in keys if k.endswith(".log")]
    metadata = [k for k in keys if k.endswith(".metadata.json")]
    assert len(logs) >= 2 and len(metadata) == len(logs), keys
    assert {k.removesuffix(".log") for k in logs} == {
        k.removesuffix(".metadata.json") for k in metadata
    }
    # Nothing went to the embedded default store.
    assert not (broker.data_dir / "remote-storage").exists()

    _assert_exact(_read(broker.bootstrap, topic, 0, n), 0, n)
    broker.kill9()
    broker.start()
    _assert_exact(_read(broker.bootstrap, topic, 0, n), 0, n)
