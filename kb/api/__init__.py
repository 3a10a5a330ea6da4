"""The REST API (Django REST framework). Domain code never imports this package."""
