"""The factory floor: an OpenAI-compatible gateway that schedules, meters and bills."""
