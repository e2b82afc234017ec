"""Teach drf-spectacular how API keys are sent, so the OpenAPI schema documents the header."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class APIKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "access.authentication.APIKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`; create keys with `manage.py create_api_key` or in the admin.",
        }


#: What any API operation may answer besides its own responses; see docs/operations.md.
COMMON_ERRORS = {
    "401": "Missing, malformed, unknown, revoked or expired API key.",
    "403": "The API key's scope is too low for this operation.",
    "429": "Too many requests for this API key; retry after `Retry-After` seconds.",
    "503": "A backing service (the database) is unavailable; retry after `Retry-After` seconds.",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}}
_METHODS = ("get", "post", "put", "patch", "delete")


def document_error_responses(result, generator, request, public):
    """drf-spectacular post-processing hook: every ``/api/v1/`` operation documents the errors
    the platform itself can return (authentication, scope, rate limit, database outage, unknown
    object, bad input), so clients and schema-driven tests know every status they may see.
    Responses an operation documents itself are left alone."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", {
        "type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"],
    })
    # A named component, not an inline object: generated clients get one ValidationError type
    # rather than a model per operation (``V1MetricsCreateResponse400``, ...).
    schemas.setdefault("ValidationError", {
        "type": "object", "additionalProperties": {},
        "description": "Each key names a field (or `detail` / `non_field_errors`) with its errors.",
    })
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    invalid = {"application/json": {"schema": {"$ref": "#/components/schemas/ValidationError"}}}
    for name, component in schemas.items():
        if name.endswith("Request"):
            _accept_numbers_for_decimals(component)
    for path, item in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            extra = dict(COMMON_ERRORS)
            if "{" in path:
                extra["404"] = "No object with this key."
            if method != "get" or operation.get("parameters"):
                extra["400"] = "Invalid input."
            if "requestBody" in operation:
                extra["415"] = "The body is not `application/json`."
                extra["413"] = "The body is over `API_MAX_BODY_BYTES` (2 MiB)."
            for status, description in extra.items():
                if status in responses:
                    if status == "400":
                        _name_free_form_errors(responses[status], invalid["application/json"]["schema"])
                    continue
                body = {"description": description, "content": invalid if status == "400" else error}
                if status in ("429", "503"):
                    body["headers"] = _RETRY_AFTER
                responses[status] = body
    return result


def _name_free_form_errors(response: dict, ref: dict) -> None:
    """A 400 an operation documents as a bare ``OpenApiTypes.OBJECT`` is the same field -> errors
    map: point it at ``ValidationError`` too (keeping the operation's own description)."""
    media = (response.get("content") or {}).get("application/json") or {}
    if media.get("schema") in ({"type": "object", "additionalProperties": {}}, {"type": "object"}):
        media["schema"] = dict(ref)


def _accept_numbers_for_decimals(component: dict) -> None:
    """DRF's DecimalField takes ``12.5`` as well as ``"12.5"``; say so in request bodies (the
    responses keep rendering decimals as strings)."""
    properties = component.get("properties") or {}
    for name, prop in list(properties.items()):
        if prop.get("type") != "string" or prop.get("format") != "decimal":
            continue
        outer = {"description", "readOnly", "writeOnly", "nullable"}
        widened = {k: v for k, v in prop.items() if k in outer}
        widened["oneOf"] = [{"type": "number"}, {k: v for k, v in prop.items() if k not in outer}]
        properties[name] = widened
