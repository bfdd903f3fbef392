"""/docs and /redoc work offline (every asset served by the server itself), and the OpenAPI
schema gives every route its request and response models."""

import re
import urllib.request

import pytest

from service_harness import ApiOnlyServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    with ApiOnlyServer(folder / "home", folder) as running:
        yield running


def get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url) as response:
        return response.status, response.headers["Content-Type"], response.read()


def referenced_urls(html: str) -> list[str]:
    """Every URL the page loads: src/href attributes and the spec URL Swagger UI or ReDoc fetches."""
    return re.findall(r'(?:src|href|spec-url)="([^"]*)"', html) + re.findall(r"url: '([^']*)'", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(server, page):
    status, content_type, body = get(server.url + page)
    html = body.decode()
    assert status == 200 and content_type.startswith("text/html")
    urls = referenced_urls(html)
    assert len(urls) >= 3, urls  # script, favicon, spec (and the stylesheet for Swagger UI)
    assert not re.search(r"https?://", html), "the page names an outside URL"
    for url in urls:
        assert url.startswith("/"), url
        status, _, asset = get(server.url + url)
        assert status == 200 and len(asset) > 0, url
    scripts = re.findall(r'<script src="([^"]*)"', html)
    assert scripts and all(len(get(server.url + s)[2]) > 100_000 for s in scripts)  # the real bundles, not stubs


def test_swagger_ui_reads_openapi_3_1(server):
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders from version 5 on."""
    _, _, bundle = get(server.url + "/docs-assets/swagger-ui-bundle.js")
    _, _, schema = get(server.url + "/openapi.json")
    assert b'"openapi":"3.1' in schema.replace(b" ", b"")
    version = re.search(rb'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', bundle)
    assert version and int(version[1]) >= 5 and b"isOAS31" in bundle


def test_oauth2_redirect_page_is_served(server):
    assert get(server.url + "/docs/oauth2-redirect")[0] == 200


def operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield f"{method.upper()} {path}", operation


def test_every_route_has_a_response_schema_and_every_body_a_request_schema(server):
    schema = server.app.openapi()
    found = dict(operations(schema))
    assert len(found) >= 17 and "GET /metrics" in found and "POST /model/{model_id}/converse-stream" in found
    missing = []
    for name, operation in found.items():
        success = {code: r for code, r in operation.get("responses", {}).items() if code.startswith("2")}
        contents = [media for response in success.values() for media in (response.get("content") or {}).values()]
        if not contents or not all(media.get("schema") for media in contents):
            missing.append(f"{name}: no response schema")
        if name.startswith(("POST", "PUT", "PATCH")) and "requestBody" in operation:
            bodies = operation["requestBody"].get("content", {}).values()
            if not bodies or not all(media.get("schema") for media in bodies):
                missing.append(f"{name}: no request body schema")
        for parameter in operation.get("parameters", []):
            if not parameter.get("schema"):
                missing.append(f"{name}: parameter {parameter.get('name')} has no schema")
    assert not missing, "\n".join(missing)


def test_every_route_the_app_serves_is_in_the_schema_or_deliberately_not():
    """A route left out of the schema must be one of these: pages and probes, not API."""
    import tempfile

    from fastapi.routing import APIRoute

    from tunesmith.server import ServiceSettings, create_app

    app = create_app(ServiceSettings(home=tempfile.mkdtemp(), run_workers=False, devices=["cpu"]))
    hidden = {route.path for route in app.routes if isinstance(route, APIRoute) and not route.include_in_schema}
    assert hidden <= {"/health", "/docs", "/docs/oauth2-redirect", "/redoc"} | {p for p in hidden if p.startswith("/console")}
