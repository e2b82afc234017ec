"""The OpenAPI schema and interactive docs work offline (assets served locally, no CDN)."""
import re

import pytest

pytestmark = pytest.mark.django_db


def test_schema_and_docs_are_served_locally(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    body = schema.json()
    assert "/api/v1/experiments" in body["paths"]
    assert body["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "Authorization"
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn." not in html and "unpkg" not in html
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert assets, html[:500]
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200, asset
        b"".join(r.streaming_content) if hasattr(r, "streaming_content") else r.content
