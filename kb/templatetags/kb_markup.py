from django import template

from kb.markup import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str):
    """Render Markdown safely: `{{ insight.statement|markdown }}`."""
    return render_markdown(text)
