"""The S3 landing zone's logic against an in-memory stand-in for the boto3 client (the calls it makes:
list_objects_v2 through a paginator, get_object, put_object, delete_object). Real S3 is not reachable here."""

import hashlib
import io

import pytest

from mlops_assets.core.ingestion.landing import Quarantine, S3Landing, UnsafeFileName, move_to_quarantine, parse_s3_url


class FakeS3:
    def __init__(self):
        self.objects = {}

    def put_object(self, Bucket, Key, Body):
        self.objects[(Bucket, Key)] = bytes(Body)

    def get_object(self, Bucket, Key):
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}

    def delete_object(self, Bucket, Key):
        self.objects.pop((Bucket, Key), None)

    def list_objects_v2(self, Bucket, Prefix=""):
        return {"Contents": [
            {"Key": k, "ETag": f'"{hashlib.md5(v).hexdigest()}"', "Size": len(v)}
            for (b, k), v in sorted(self.objects.items()) if b == Bucket and k.startswith(Prefix)
        ]}

    def get_paginator(self, name):
        assert name == "list_objects_v2"
        fake = self

        class Paginator:
            def paginate(self, Bucket, Prefix):
                yield fake.list_objects_v2(Bucket=Bucket, Prefix=Prefix)

        return Paginator()


def test_s3_landing_lists_reads_and_quarantines(tmp_path):
    bucket, prefix = parse_s3_url("s3://incoming/elec2/landing")
    client = FakeS3()
    landing = S3Landing(client, bucket, prefix)
    landing.deliver("features_2024-01-02.csv", b"a\n1\n")
    client.put_object(Bucket=bucket, Key="elec2/landing/../escape.csv", Body=b"x")
    client.put_object(Bucket=bucket, Key="elsewhere/features_2024-01-03.csv", Body=b"x")
    files, rejected = landing.list_files()
    assert [(f.kind, f.partition) for f in files] == [("features", "2024-01-02")]
    assert [name for name, _ in rejected] == ["../escape.csv"]
    assert landing.read("features_2024-01-02.csv") == b"a\n1\n"
    before = files[0].sha256
    landing.deliver("features_2024-01-02.csv", b"a\n2\n")
    assert landing.list_files()[0][0].sha256 != before
    record = move_to_quarantine(landing, Quarantine(tmp_path), "features_2024-01-02.csv", "2024-01-02", "bad")
    assert record and not landing.exists("features_2024-01-02.csv")
    with pytest.raises(UnsafeFileName):
        landing.read("../escape.csv")
    with pytest.raises(ValueError):
        parse_s3_url("/local/path")
