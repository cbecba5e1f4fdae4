"""Shards read from and outputs published to ``s3://`` (s3fs through fsspec), against a local
``moto[server]`` S3 on a free loopback port: the same code path as AWS, MinIO or Ceph (the
endpoint comes from ``AWS_ENDPOINT_URL``)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers import moto_s3

pytestmark = pytest.mark.slow


def test_source_on_s3_and_outputs_published_to_s3(tmp_path: Path, sample_dir: Path) -> None:
    pytest.importorskip("s3fs")
    import boto3

    with moto_s3() as s3:
        os.environ.update(s3.env())  # for boto3 / s3fs in this process; restored below
        try:
            client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
            client.create_bucket(Bucket="charmeta")
            files = [p for p in sample_dir.rglob("*") if p.is_file()]
            for p in files:
                client.upload_file(str(p), "charmeta", f"in/{p.relative_to(sample_dir)}")
            out = tmp_path / "out"
            env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
            cmd = [sys.executable, "-m", "charmeta.cli", "run", "--source", "s3://charmeta/in/", "--output", str(out)]
            r = subprocess.run([*cmd, "--publish", "s3://charmeta/out"], env=env, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr[-3000:]
            manifest = json.loads((out / "export" / "manifest.json").read_text())
            assert (
                manifest["records"] == 59
            )  # every sample entry (44 text, 15 drawings) read from the bucket, none lost
            assert "published: s3://charmeta/out (" in r.stdout

            def remote(key: str) -> bytes:
                return client.get_object(Bucket="charmeta", Key=f"out/{key}")["Body"].read()

            listed = {o["Key"] for o in client.list_objects_v2(Bucket="charmeta", Prefix="out/")["Contents"]}
            local = sorted((out / "validated_records").glob("*.parquet"))
            assert local and {f"out/validated_records/{p.name}" for p in local} <= listed
            for p in local + [out / "export" / "records.jsonl", out / "export" / "manifest.json"]:
                rel = p.relative_to(out).as_posix()
                assert hashlib.sha256(remote(rel)).digest() == hashlib.sha256(p.read_bytes()).digest(), rel

            # nothing changed: a second run sends nothing
            r2 = subprocess.run([*cmd, "--publish", "s3://charmeta/out"], env=env, capture_output=True, text=True)
            assert r2.returncode == 0, r2.stderr[-3000:]
            assert "(0 files sent," in r2.stdout
        finally:
            for k in s3.env():
                os.environ.pop(k, None)
