import os

# Hypothesis profiles: the default keeps CI quick; HYPOTHESIS_PROFILE=thorough digs deeper.
from hypothesis import settings

settings.register_profile("default", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
