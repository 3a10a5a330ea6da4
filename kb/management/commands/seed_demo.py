from django.core.management.base import BaseCommand

from kb.demo import seed_demo


class Command(BaseCommand):
    help = "Fill the knowledge base with demo content and users. Running it twice changes nothing."

    def handle(self, *args, **options) -> None:
        logins = seed_demo()
        self.stdout.write(self.style.SUCCESS("Demo content is in place. Demo logins:"))
        for username, password, role in logins:
            self.stdout.write(f"  {username:<16} {password:<22} {role}")
