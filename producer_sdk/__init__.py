"""What services embed to route requests by outcome. The Router arrives with the SDK work."""

__all__: list[str] = []
