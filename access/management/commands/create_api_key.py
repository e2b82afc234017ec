from django.core.management.base import BaseCommand, CommandError

from access.models import Scope
from access.services import create_api_key


class Command(BaseCommand):
    help = "Create an API key. The key is printed once, alone on the last line; only its hash is stored."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--scope", choices=Scope.values, default=Scope.CLIENT)

    def handle(self, *args, name: str, scope: str, **options) -> None:
        if not name.strip() or len(name) > 50:
            raise CommandError("name must be 1 to 50 characters")
        obj, raw = create_api_key(name, scope)
        self.stdout.write(f"Created API key '{obj.name}' with scope {obj.scope} (prefix {obj.prefix}).")
        self.stdout.write("Store it now: it cannot be shown again.")
        self.stdout.write(raw)
