from django.core.management.base import BaseCommand, CommandError

from access.models import Scope
from access.services import create_api_key


class Command(BaseCommand):
    help = "Create an API key. The key is printed once, alone on the last line; only its hash is stored."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--scope", choices=Scope.values, default=Scope.CLIENT)
        parser.add_argument("--environment", default=None,
                            help="The environment whose configuration the key sees (default: production).")

    def handle(self, *args, name: str, scope: str, environment: str | None = None, **options) -> None:
        if not name.strip() or len(name) > 50:
            raise CommandError("name must be 1 to 50 characters")
        try:
            obj, raw = create_api_key(name, scope, environment=environment)
        except ValueError as e:
            raise CommandError(str(e)) from None
        self.stdout.write(f"Created API key '{obj.name}' with scope {obj.scope} in environment "
                          f"{obj.environment_key} (prefix {obj.prefix}).")
        self.stdout.write("Store it now: it cannot be shown again.")
        self.stdout.write(raw)
