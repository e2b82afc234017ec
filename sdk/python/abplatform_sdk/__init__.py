"""abplatform SDK: assign units locally from the server's configuration, report exposures.

    from abplatform_sdk import Client
    client = Client("https://ab.example.com", api_key="...")
    answer = client.assign("checkout-button", "u-123", {"country": "CN"})
    render(answer.variant, answer.payload)
    client.close()  # also at exit: flushes queued exposures
"""
from .client import Client
from .evaluator import Assignment, DocumentError, Evaluator, bucket, override_hash, variant_ranges

__all__ = [
    "Assignment", "Client", "DocumentError", "Evaluator", "bucket", "override_hash",
    "variant_ranges",
]
__version__ = "0.1.0"
