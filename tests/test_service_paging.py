"""Keyset paging, as a property: while jobs are created between pages, a listing never repeats
a job and never skips one that existed when the listing began."""

import itertools

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import arithmetic, write_jsonl
from service_harness import ApiOnlyServer

ROLE = "arn:aws:iam::123456789012:role/tunesmith"
_runs = itertools.count()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paging")
    write_jsonl(folder / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(folder / "home", folder) as server:
        yield server.client(), folder


def create(client, folder, name):
    return client.create_model_customization_job(
        jobName=name, customModelName=f"{name}-m", roleArn=ROLE, baseModelIdentifier="micro",
        trainingDataConfig={"s3Uri": f"file://{folder}/t.jsonl"}, outputDataConfig={"s3Uri": f"file://{folder}/out"},
    )["jobArn"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    existing=st.integers(min_value=0, max_value=7),
    page_size=st.integers(min_value=1, max_value=4),
    order=st.sampled_from(["Ascending", "Descending"]),
    created_between=st.lists(st.integers(min_value=0, max_value=2), min_size=8, max_size=8),
)
def test_pages_never_repeat_or_skip_while_jobs_are_created(api, existing, page_size, order, created_between):
    client, folder = api
    run = f"p{next(_runs)}x"  # nameContains isolates this example's jobs on the shared server
    names = (f"{run}-{i}" for i in itertools.count())
    before = [create(client, folder, next(names)) for _ in range(existing)]
    seen, token, created = [], None, []
    for pages in itertools.count():
        assert pages <= 40, "the listing never ends: a page repeats"  # at most 7 + 8 x 2 jobs, 1 per page
        kwargs = {"maxResults": page_size, "sortOrder": order, "nameContains": run} | ({"nextToken": token} if token else {})
        page = client.list_model_customization_jobs(**kwargs)
        seen += [s["jobArn"] for s in page["modelCustomizationJobSummaries"]]
        token = page.get("nextToken")
        if not token:
            break
        more = created_between[pages] if pages < len(created_between) else 0  # then stop: ascending pages must catch up
        created += [create(client, folder, next(names)) for _ in range(more)]
    assert len(seen) == len(set(seen)), "a job was listed twice"
    assert set(before) <= set(seen), "a job that existed when the listing began was skipped"
    if order == "Ascending":  # newer jobs come after the last page's key: listed, in creation order
        assert seen == before + created
    else:  # newer jobs sort before the first page's key: never listed
        assert seen == before[::-1]
