from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .keycache import bump_version
from .models import APIKey, Environment


@receiver(post_save, sender=APIKey)
@receiver(post_delete, sender=APIKey)
@receiver(post_save, sender=Environment)
@receiver(post_delete, sender=Environment)
def _api_key_changed(**kwargs) -> None:
    bump_version()
