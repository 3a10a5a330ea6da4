"""Template tags for coding rounds, so that any page showing an interview can say whether the
signed-in user codes it blind without its view passing anything."""

from django import template

from kb import selectors

register = template.Library()


@register.simple_tag(takes_context=True)
def blind_coding_rounds(context, interview) -> list:
    """The open rounds in which the signed-in user codes `interview` blind."""
    request = context.get("request")
    if request is None:
        return []
    return selectors.coding_rounds_blind(user=request.user, interview=interview)
