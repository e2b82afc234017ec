"""abplatform SDK: assign units locally from the server's configuration, report exposures.

    from abplatform_sdk import Client
    client = Client("https://ab.example.com", api_key="...")
    answer = client.assign("checkout-button", "u-123", {"country": "CN"})
    render(answer.variant, answer.payload)
    if client.get_flag("new-checkout", "u-123", {"country": "CN"}, default=False).value: ...
    client.close()  # also at exit: flushes queued exposures
"""
from .client import Client
from .evaluator import Assignment, DocumentError, Evaluator, bucket, override_hash, variant_ranges
from .flags import FlagResult

__all__ = [
    "Assignment", "Client", "DocumentError", "Evaluator", "FlagResult", "bucket", "override_hash",
    "variant_ranges",
]
__version__ = "0.1.0"
