"""How tunesmith talks to a tunesmith server: boto3's ``bedrock`` client pointed at it, the
``tunesmithConfig`` extension of CreateModelCustomizationJob, and SigV4-signed GETs of the
routes botocore's model lacks. Used by ``tunesmith jobs`` and by ``tunesmith tune --endpoint``."""

from __future__ import annotations

import json
import urllib.request


def session():
    """boto3's usual credential chain; a server without --credentials accepts any."""
    import boto3

    found = boto3.session.Session()
    if found.get_credentials() is None:
        found = boto3.session.Session(aws_access_key_id="tunesmith", aws_secret_access_key="tunesmith",
                                      region_name=found.region_name)
    return found


def bedrock(endpoint: str):
    from botocore.config import Config

    current = session()
    return current.client("bedrock", endpoint_url=endpoint, region_name=current.region_name or "us-east-1",
                          config=Config(retries={"max_attempts": 2}))


def add_tunesmith_config(client, config: dict) -> None:
    """Make ``client`` (boto3's ``bedrock``) send ``tunesmithConfig`` with CreateModelCustomizationJob.

    botocore refuses parameters its service model lacks, so the field is added to the
    serialised body in a ``before-call`` event handler, before the request is signed.
    """
    def add(params, **_):
        body = json.loads(params["body"] or b"{}")
        params["body"] = json.dumps({**body, "tunesmithConfig": config}).encode()

    client.meta.events.register("before-call.bedrock.CreateModelCustomizationJob", add)


def signed_get(url: str, timeout: float = 10) -> bytes:
    """GET a tunesmith-only route (not in botocore's model), SigV4-signed like boto3's calls."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    current = session()
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(current.get_credentials().get_frozen_credentials(), "bedrock", current.region_name or "us-east-1").add_auth(request)
    prepared = urllib.request.Request(url, headers=dict(request.headers.items()), method="GET")
    return urllib.request.urlopen(prepared, timeout=timeout).read()
