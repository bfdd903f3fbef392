"""Paths and URIs from requests: read once by :func:`tunesmith.jobs.uris.locate`, refused with
their field's name before anything touches the file system (the create route, the console's
data check and the worker all read them the same way)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import arithmetic, write_jsonl
from tunesmith.jobs.uris import CONTROL, Location, UriError, fetch, locate, publish

REFUSED = "control characters are refused"


@pytest.fixture
def root(tmp_path):
    """An allowed folder with a data file; ``elsewhere`` beside it is not allowed."""
    folder = tmp_path.resolve() / "data"
    folder.mkdir()
    (folder / "t.jsonl").write_text("{}\n")
    (tmp_path / "elsewhere").mkdir()
    return folder


def refused(uri: str, roots) -> str:
    with pytest.raises(UriError) as info:
        locate(uri, [str(r) for r in roots])
    return str(info.value)


# --- Control characters, raw or percent-encoded ---------------------------------------------
def test_a_raw_nul_is_refused(root):
    assert refused(f"{root}/a\x00b", [root]) == f"'{root}/a\\x00b' contains a control character (U+0000); {REFUSED}"


def test_an_encoded_nul_in_a_file_uri_is_refused(root):
    assert refused(f"file://{root}/%00x", [root]) == f"'file://{root}/%00x' decodes to a control character (U+0000); {REFUSED}"


def test_percent_decoding_happens_once(root):
    """``%2500`` decodes to the three characters ``%00``: a file of that name, never NUL."""
    (root / "%00").write_text("{}\n")
    location = locate(f"file://{root}/%2500", [str(root)])
    assert location.path == root / "%00"
    assert fetch(location, root, "unused") == root / "%00"
    assert locate(f"file://{root}/%252500", [str(root)]).path == root / "%2500"


def test_a_plain_path_is_never_percent_decoded(root):
    assert locate(f"{root}/%00", [str(root)]).path == root / "%00"
    assert locate(f"{root}/a%20b", [str(root)]).path == root / "a%20b"


@pytest.mark.parametrize("raw,code", [("\x01", "0001"), ("\n", "000A"), ("\x1b", "001B"), ("\x1f", "001F"), ("\x7f", "007F"),
                                      ("\x85", "0085"), ("\x9f", "009F")])
def test_raw_control_characters_are_refused(root, raw, code):
    shown = repr(raw)[1:-1]
    assert refused(f"{root}/a{raw}b", [root]) == f"'{root}/a{shown}b' contains a control character (U+{code}); {REFUSED}"


@pytest.mark.parametrize("encoded,code", [("%01", "0001"), ("%0a", "000A"), ("%0D", "000D"), ("%1B", "001B"), ("%7f", "007F"),
                                          ("%C2%85", "0085")])
def test_encoded_control_characters_are_refused(root, encoded, code):
    uri = f"file://{root}/a{encoded}b"
    assert refused(uri, [root]) == f"'{uri}' decodes to a control character (U+{code}); {REFUSED}"


def test_lone_surrogates_and_bad_utf8_are_refused(root):
    assert refused(f"{root}/\ud800", [root]) == f"'{root}/\\ud800' contains a lone surrogate, which is not a character"
    for encoded in ("%ff", "%ED%A0%80"):  # not UTF-8; a surrogate's UTF-8 form
        assert refused(f"file://{root}/{encoded}", [root]) == f"'file://{root}/{encoded}' is not UTF-8 once percent-decoded"


# --- Allowed roots: .., symlinks, ~, relative paths -----------------------------------------
def test_a_path_outside_the_roots_is_refused(root):
    assert refused("/etc/passwd", [root]) == (
        f"'/etc/passwd' is outside the folders this server may use ({root}); start it with --allow-path to add one")


def test_dot_dot_is_resolved_before_the_check(root):
    elsewhere = root.parent / "elsewhere"
    assert refused(f"{root}/../elsewhere/x.jsonl", [root]) == (
        f"'{root}/../elsewhere/x.jsonl' is outside the folders this server may use ({root}): it resolves to "
        f"'{elsewhere}/x.jsonl'; start it with --allow-path to add one")
    assert refused(f"file://{root}/%2E%2E/elsewhere", [root]) == (  # dots percent-encoded: decoded, then resolved
        f"'file://{root}/%2E%2E/elsewhere' is outside the folders this server may use ({root}): it resolves to "
        f"'{elsewhere}'; start it with --allow-path to add one")
    assert locate(f"{root}/sub/../t.jsonl", [str(root)]).path == root / "t.jsonl"


def test_a_symlink_out_of_the_roots_is_refused(root):
    elsewhere = root.parent / "elsewhere"
    (root / "link").symlink_to(elsewhere)
    (root / "inner").symlink_to(root / "t.jsonl")
    assert refused(f"{root}/link/x.jsonl", [root]) == (
        f"'{root}/link/x.jsonl' is outside the folders this server may use ({root}): it resolves to "
        f"'{elsewhere}/x.jsonl'; start it with --allow-path to add one")
    assert locate(f"{root}/inner", [str(root)]).path == root / "t.jsonl"  # files are opened by the resolved path


def test_a_symlink_loop_is_refused_or_stays_inside(root):
    (root / "loop").symlink_to(root / "loop")
    try:
        location = locate(f"{root}/loop/x", [str(root)])
    except UriError as exc:  # Python 3.11 and 3.12: resolve() raises on the loop
        assert str(exc).startswith(f"'{root}/loop/x' cannot be resolved: ")
    else:  # later Pythons leave the loop unresolved: still inside, and unreadable
        assert location.path.is_relative_to(root)


def test_the_roots_are_resolved_too(root, tmp_path):
    (tmp_path / "alias").symlink_to(root)
    assert locate(f"{root}/t.jsonl", [str(tmp_path / "alias")]).path == root / "t.jsonl"


def test_home_and_relative_paths_resolve_on_the_server(root, monkeypatch):
    monkeypatch.chdir(root)
    assert locate("t.jsonl", [str(root)]).path == root / "t.jsonl"
    monkeypatch.setenv("HOME", str(root))
    assert locate("~/t.jsonl", [str(root)]).path == root / "t.jsonl"


def test_very_long_paths_are_refused_before_the_file_system_sees_them(root):
    assert refused(f"{root}/{'a' * 256}", [root]).endswith(
        f"({len(str(root)) + 257} characters)' has a name of 256 bytes; the longest a file system takes is 255")
    deep = f"{root}/" + "a/" * 2100
    assert refused(deep, [root]).endswith(f"' is a path of {len(deep)} bytes; the longest a file system takes is 4096")
    assert locate(f"{root}/{'a' * 255}", [str(root)]).path == root / ("a" * 255)


# --- Forms and schemes ----------------------------------------------------------------------
@pytest.mark.parametrize("uri,message", [
    ("", "a URI is required"),
    ("http://example.com/x", "'http://example.com/x' is not an s3://, file:// or local path"),
    ("S3://bucket/key", "'S3://bucket/key' is not an s3://, file:// or local path"),
    ("ftp:///x", "'ftp:///x' is not an s3://, file:// or local path"),
    ("file:/etc/passwd", "'file:/etc/passwd' is not a file:// URI; write file:///path"),
    ("file://evil.example/etc/passwd", "'file://evil.example/etc/passwd' names the host 'evil.example'; a file:// URI here is "
                                       "file:///path or file://localhost/path"),
    ("file:///x?y", "'file:///x?y' has a query or fragment; in a file name, write ? as %3F and # as %23"),
    ("file:///x#y", "'file:///x#y' has a query or fragment; in a file name, write ? as %3F and # as %23"),
    ("file://", "'file://' has no path"),
    ("s3://", "'s3://' has no bucket"),
    ("s3:///key", "'s3:///key' has no bucket"),
    ("s3://bucket/a\x00b", "'s3://bucket/a\\x00b' contains a control character (U+0000); control characters are refused"),
])
def test_odd_forms_are_refused(root, uri, message):
    assert refused(uri, [root]) == message


def test_s3_uris_are_read_literally_and_need_no_root():
    assert locate("s3://bucket/data/%00x.jsonl", []) == Location("s3://bucket/data/%00x.jsonl", bucket="bucket", key="data/%00x.jsonl")
    assert locate("s3://bucket/a?b#c", []).key == "a?b#c"
    assert locate("s3://bucket", []).key == ""


@pytest.mark.parametrize("form", ["{root}/t.jsonl", "file://{root}/t.jsonl", "file://localhost{root}/t.jsonl", "file://{root}/t%2Ejsonl"])
def test_a_good_path_is_accepted(root, form):
    assert locate(form.format(root=root), [str(root)]) == Location(form.format(root=root), path=root / "t.jsonl")


def test_publish_stays_inside_the_output(root):
    output = locate(f"file://{root}/out", [str(root)])
    assert publish(root / "t.jsonl", output, "job/a.jsonl") == str(root / "out" / "job" / "a.jsonl")
    (root / "out" / "trap").symlink_to(root.parent / "elsewhere")  # made after the job was checked
    with pytest.raises(UriError, match="outside"):
        publish(root / "t.jsonl", output, "trap/a.jsonl")
    assert not (root.parent / "elsewhere" / "a.jsonl").exists()


PIECES = ["/", "..", ".", "%", "%00", "%25", "00", "%2e", "%2E", "%2f", "%0a", "%C0%80", "%ff", "~", "a", "\u00e9", "\x00", "\x1f", "\x7f",
          "\x85", "\ud800", "?", "#", "file://", "file:", "s3://", "localhost", "link", "\\", " "]


@given(st.data())
@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_string_is_located_inside_the_roots_or_refused(root, data):
    """Whatever a request sends, :func:`locate` refuses it with UriError or gives S3 or a path inside the roots."""
    if not (root / "link").is_symlink():
        (root / "link").symlink_to(root.parent / "elsewhere")
    prefix = data.draw(st.sampled_from(["", str(root), f"file://{root}", f"file://localhost{root}", "s3://b"]))
    uri = prefix + data.draw(st.one_of(st.lists(st.sampled_from(PIECES), max_size=12).map("".join), st.text(max_size=40)))
    try:
        location = locate(uri, [str(root)])
    except UriError:
        return
    if location.is_s3:
        assert uri.startswith("s3://") and location.bucket
    else:
        assert location.path.is_relative_to(root) and not CONTROL.search(str(location.path)), (uri, location)


# --- Every request field that carries a path ------------------------------------------------
FIELDS = {
    "trainingDataConfig.s3Uri": lambda body, uri: body["trainingDataConfig"].update(s3Uri=uri),
    "outputDataConfig.s3Uri": lambda body, uri: body["outputDataConfig"].update(s3Uri=uri),
    "validationDataConfig.validators[0].s3Uri": lambda body, uri: body.update(validationDataConfig={"validators": [{"s3Uri": uri}]}),
}


@pytest.fixture
def api(root):
    from service_harness import ApiOnlyServer

    with ApiOnlyServer(root.parent / "home", root) as server:
        yield server


@pytest.mark.parametrize("field", FIELDS)
def test_the_create_route_names_the_field(api, root, field):
    from test_service_devices import post, request_body

    for uri, problem in [
        (f"file://{root}/%00x", f"'file://{root}/%00x' decodes to a control character (U+0000); {REFUSED}"),
        (f"file://{root}/%1b", f"'file://{root}/%1b' decodes to a control character (U+001B); {REFUSED}"),
        (f"{root}/../elsewhere", f"'{root}/../elsewhere' is outside the folders this server may use ({root.parent / 'home'}, {root}): "
                                 f"it resolves to '{root.parent / 'elsewhere'}'; start it with --allow-path to add one"),
        ("gopher://x/y", "'gopher://x/y' is not an s3://, file:// or local path"),
    ]:
        body = request_body(root, "j")
        FIELDS[field](body, uri)
        status, answer = post(api.url, body)
        assert (status, answer["message"]) == (400, f"{field}: {problem}")
    body = request_body(root, "raw")
    FIELDS[field](body, f"{root}/a\x00b")  # refused by the request model itself, by name
    status, answer = post(api.url, body)
    assert status == 400 and answer["message"].startswith(field) and "contains a control character" in answer["message"]


def test_the_console_checks_its_data_paths_the_same_way(root):
    from tunesmith.console.create import check_data
    from tunesmith.jobs.settings import ServiceSettings

    settings = ServiceSettings(home=root.parent / "home", allowed_roots=[str(root)], devices=["cpu"])
    assert check_data({"training": f"file://{root}/%00x"}, settings).note == (
        f"The training data 'file://{root}/%00x' decodes to a control character (U+0000); {REFUSED}.")
    assert check_data({"training": f"{root}/t.jsonl"}, settings).note is None
    (root / "link").symlink_to(root.parent / "elsewhere")
    assert check_data({"training": f"{root}/t.jsonl", "validation": f"{root}/link/v.jsonl"}, settings).note == (
        f"The validation data '{root}/link/v.jsonl' is outside the folders this server may use ({root.parent / 'home'}, {root}): "
        f"it resolves to '{root.parent / 'elsewhere' / 'v.jsonl'}'; start it with --allow-path to add one.")
    assert check_data({"training": f"file://{root}/missing%2500"}, settings).note == (
        f"The training data 'file://{root}/missing%2500' does not exist or is not a file.")


# --- The worker reads only what it has checked itself ---------------------------------------
def test_the_worker_is_told_its_servers_roots(root):
    from tunesmith.jobs.executors.local import worker_arguments
    from tunesmith.jobs.settings import ServiceSettings

    settings = ServiceSettings(home=root.parent / "home", allowed_roots=[str(root)], devices=["cpu"])
    arguments = worker_arguments(settings, "abcdefghijkl")
    assert [arguments[i + 1] for i, a in enumerate(arguments) if a == "--allow-path"] == [str(root.parent / "home"), str(root)]


def _job(api, root, name: str) -> tuple:
    from test_service_devices import post, request_body

    write_jsonl(root / "t.jsonl", arithmetic(20))
    status, answer = post(api.url, request_body(root, name))
    assert status == 201, answer
    return api.app.state.store, answer["jobArn"].rsplit("/", 1)[1]


def _failure(store, job_id) -> str:
    from tunesmith.jobs.store import Job

    with store.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "Failed"
        return job.failure_message


def test_a_worker_of_another_server_checks_the_paths_against_its_own_roots(api, root):
    from tunesmith.jobs.worker import JobWorker

    store, job_id = _job(api, root, "moved")
    home = root.parent / "other-home"
    JobWorker(store, home, job_id, device="cpu").execute()  # a server without --allow-path for the data
    assert _failure(store, job_id) == (f"trainingDataConfig.s3Uri: 'file://{root}/t.jsonl' is outside the folders this server may use "
                                       f"({home}); start it with --allow-path to add one")


def test_a_worker_refuses_a_stored_spec_that_predates_the_checks(api, root):
    from tunesmith.jobs.store import Job
    from tunesmith.jobs.worker import JobWorker

    store, job_id = _job(api, root, "old")
    with store.session() as session:
        job = session.get(Job, job_id)
        job.spec_json = {**json.loads(json.dumps(job.spec_json)), "output_uri": f"file://{root}/%00out"}
        session.commit()
    JobWorker(store, root.parent / "home", job_id, device="cpu", allowed_roots=[str(root)]).execute()
    assert _failure(store, job_id) == f"outputDataConfig.s3Uri: 'file://{root}/%00out' decodes to a control character (U+0000); {REFUSED}"
