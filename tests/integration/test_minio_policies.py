"""Each service's S3 user can write only its own layers; root is for provisioning only."""

import uuid

import boto3
import pytest
import trino.exceptions
from botocore.client import Config
from botocore.exceptions import ClientError

from lakehouse.trino import query

pytestmark = [pytest.mark.trino, pytest.mark.spark]

LAYERS = ("raw", "quarantine", "audit", "staging", "intermediate", "marts")
WRITES = {
    "spark": {"raw", "quarantine", "audit"},
    "trino": {"staging", "intermediate", "marts"},
    "reader": set(),
}


def s3(settings, who):
    key = getattr(settings, f"{who}_s3_access_key")
    secret = getattr(settings, f"{who}_s3_secret_key").get_secret_value()
    return boto3.client("s3", endpoint_url=settings.s3_endpoint, aws_access_key_id=key,
                        aws_secret_access_key=secret, region_name=settings.s3_region,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def _denied(fn) -> bool:
    try:
        fn()
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "AccessDenied", exc.response["Error"]
        return True
    return False


@pytest.mark.parametrize("who", sorted(WRITES))
def test_service_user_writes_only_its_layers(stack, who):
    client = s3(stack, who)
    bucket = stack.warehouse_bucket
    probe = f"_policy_probe_{uuid.uuid4().hex[:8]}"
    for layer in LAYERS:
        key = f"{layer}/{probe}"
        denied = _denied(lambda: client.put_object(Bucket=bucket, Key=key, Body=b"x"))
        assert denied == (layer not in WRITES[who]), f"{who} writing {layer}/: denied={denied}"
        if not denied:
            assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"x"
            client.delete_object(Bucket=bucket, Key=key)
    # outside every layer, and bucket administration: always denied
    assert _denied(lambda: client.put_object(Bucket=bucket, Key=probe, Body=b"x"))
    assert _denied(lambda: client.create_bucket(Bucket=f"not-allowed-{probe[-8:]}"))
    assert _denied(lambda: client.delete_bucket(Bucket=bucket))


def test_service_users_cannot_delete_outside_their_layers(stack):
    spark, trino_user = s3(stack, "spark"), s3(stack, "trino")
    bucket = stack.warehouse_bucket
    key = f"marts/_policy_probe_{uuid.uuid4().hex[:8]}"
    trino_user.put_object(Bucket=bucket, Key=key, Body=b"keep")
    assert _denied(lambda: spark.delete_object(Bucket=bucket, Key=key))
    assert trino_user.get_object(Bucket=bucket, Key=key)["Body"].read() == b"keep"
    trino_user.delete_object(Bucket=bucket, Key=key)


def test_every_service_user_reads_the_whole_bucket(stack):
    listed = {who: s3(stack, who).list_objects_v2(Bucket=stack.warehouse_bucket, MaxKeys=5)["ResponseMetadata"]["HTTPStatusCode"]
              for who in WRITES}
    assert listed == {"spark": 200, "trino": 200, "reader": 200}


def test_trino_cannot_create_a_table_in_a_spark_layer(stack):
    """The policy holds end to end: Trino's own S3 user is refused under raw/."""
    name = f"raw.it_denied_{uuid.uuid4().hex[:8]}"
    with pytest.raises(trino.exceptions.TrinoQueryError) as err:
        query(stack, f"CREATE TABLE {name} AS SELECT 1 AS x")
    causes, info = [], err.value.failure_info
    while info:
        causes.append(info.get("message") or "")
        info = info.get("cause")
    assert any("Access Denied" in c and "Status Code: 403" in c for c in causes), causes
    assert name.split(".")[1] not in {r[0] for r in query(stack, "SHOW TABLES FROM raw")}
